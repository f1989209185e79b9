package bouncer

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// maxBouncerMethods is issue 13's bound: *Bouncer keeps the loop, the
// event switch and the wiring; behaviour lives with its state.
const maxBouncerMethods = 40

// concernGroups names the types that form one concern: the fields of each
// may be used in the files of any type of the group. Every other type
// with methods is a concern of its own.
var concernGroups = [][]string{
	{"mucService", "Room"},
	{"clientSet", "client"},
}

// bouncerShared are the Bouncer fields every concern may read: the shared
// configuration and the loop's infrastructure. So may every Bouncer field
// that points to a concern (a pointer to a type with methods, from any
// package), through which only methods are called. Any other Bouncer field is the loop's own state,
// used only in Bouncer's files.
var bouncerShared = map[string]bool{"opt": true, "log": true, "account": true, "domain": true, "reg": true, "events": true, "up": true}

// TestOwnership checks the shape issue 13 asks for, on the package's
// non-test sources, with full type information:
//   - at most maxBouncerMethods methods on *Bouncer;
//   - a field of a type that has methods (a concern) is read or written
//     only in that concern's own files: the files declaring the type or
//     one of its methods (or of a type in its group). Method-less structs
//     are plain records and free to use, and a composite literal only
//     builds a value. Bouncer's fields outside bouncerShared count as
//     Bouncer's own.
//
// Run with -v to print which type owns which files.
func TestOwnership(t *testing.T) {
	cfg := &packages.Config{
		Mode:       packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
		BuildFlags: []string{"-tags", "sqlite_fts5"},
	}
	pkgs, err := packages.Load(cfg, ".")
	if err != nil {
		t.Fatalf("loading the package: %v", err)
	}
	if len(pkgs) != 1 || len(pkgs[0].Errors) > 0 {
		t.Fatalf("loading the package: %v", pkgs[0].Errors)
	}
	p := pkgs[0]
	fset := p.Fset
	fileOf := func(pos token.Pos) string { return filepath.Base(fset.Position(pos).Filename) }

	// Which files each named type's declaration and methods live in.
	files := map[string]map[string]bool{}
	methods := map[string]int{}
	addFile := func(typ, file string) {
		if files[typ] == nil {
			files[typ] = map[string]bool{}
		}
		files[typ][file] = true
	}
	for _, f := range p.Syntax {
		name := fileOf(f.Pos())
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) == 0 {
					continue
				}
				typ := recvType(d.Recv.List[0].Type)
				methods[typ]++
				addFile(typ, name)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if ts, ok := s.(*ast.TypeSpec); ok {
						addFile(ts.Name.Name, name)
					}
				}
			}
		}
	}
	group := map[string]string{}
	for _, g := range concernGroups {
		for _, typ := range g {
			group[typ] = g[0]
		}
	}
	owned := func(typ string) map[string]bool {
		g, ok := group[typ]
		if !ok {
			return files[typ]
		}
		all := map[string]bool{}
		for typ2, g2 := range group {
			if g2 == g {
				for f := range files[typ2] {
					all[f] = true
				}
			}
		}
		return all
	}

	// Every use of a concern's field, and where it is.
	var bad []string
	check := func(pos token.Pos, field *types.Var, owner string) {
		if methods[owner] == 0 {
			return // a plain record
		}
		if owner == "Bouncer" && (bouncerShared[field.Name()] || isHandle(field.Type())) {
			return
		}
		file := fileOf(pos)
		if !owned(owner)[file] {
			bad = append(bad, fmt.Sprintf("%s: %s.%s", fset.Position(pos), owner, field.Name()))
		}
	}
	for _, f := range p.Syntax {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				sel := p.TypesInfo.Selections[n]
				if sel == nil || sel.Kind() != types.FieldVal {
					return true
				}
				// The field's owner is the struct the selection ends in.
				if owner := ownerOf(sel, p.Types); owner != "" {
					check(n.Sel.Pos(), sel.Obj().(*types.Var), owner)
				}
			}
			return true
		})
	}

	// The map, for the closing note and for newcomers.
	var types_ []string
	for typ, n := range methods {
		if n > 0 {
			types_ = append(types_, typ)
		}
	}
	sort.Slice(types_, func(i, j int) bool { return methods[types_[i]] > methods[types_[j]] })
	for _, typ := range types_ {
		var fs []string
		for f := range files[typ] {
			fs = append(fs, f)
		}
		sort.Strings(fs)
		t.Logf("%-20s %3d methods  %s", typ, methods[typ], strings.Join(fs, " "))
	}
	if n := methods["Bouncer"]; n > maxBouncerMethods {
		t.Errorf("*Bouncer has %d methods, want at most %d", n, maxBouncerMethods)
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Errorf("another concern's field: %s", b)
	}
	if len(bad) > 0 {
		t.Errorf("%d uses of another concern's fields", len(bad))
	}
}

// recvType is the name of a method's receiver type.
func recvType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// ownerOf names the package's struct type that declares the selected
// field (through embedding, the innermost one).
func ownerOf(sel *types.Selection, pkg *types.Package) string {
	typ := sel.Recv()
	idx := sel.Index()
	for i, k := range idx {
		st, name := structOf(typ)
		if st == nil {
			return ""
		}
		f := st.Field(k)
		if i == len(idx)-1 {
			if name != "" && f.Pkg() == pkg {
				return name
			}
			return ""
		}
		typ = f.Type()
	}
	return ""
}

func structOf(t types.Type) (*types.Struct, string) {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	name := ""
	if n, ok := t.(*types.Named); ok {
		name = n.Obj().Name()
	}
	st, _ := t.Underlying().(*types.Struct)
	return st, name
}

// isHandle reports a pointer to a named type with methods.
func isHandle(t types.Type) bool {
	p, ok := t.(*types.Pointer)
	if !ok {
		return false
	}
	_, named := p.Elem().(*types.Named)
	return named && types.NewMethodSet(t).Len() > 0
}
