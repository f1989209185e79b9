package sqlite

import (
	"context"
	"testing"
	"time"

	"xmppbouncer/store"
)

func TestPushRegistrations(t *testing.T) {
	db, path := openTest(t)
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	a := store.PushRegistration{Resource: "phone", Service: "push.example", Node: "n1", Form: "<x xmlns='jabber:x:data'/>", Created: now}
	if err := db.SetPushRegistration(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPushRegistration(ctx, store.PushRegistration{Resource: "tablet", Service: "push.example", Node: "n2", Created: now}); err != nil {
		t.Fatal(err)
	}
	// Enabling again from the same resource replaces its registration.
	a.Node = "n3"
	if err := db.SetPushRegistration(ctx, a); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.DeletePushRegistration(ctx, "phone", "push.example", "n1"); err != nil || ok {
		t.Fatalf("delete of a replaced registration = %v, %v; want false", ok, err)
	}
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	regs, err := db2.PushRegistrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 2 || regs[0] != a || regs[1].Resource != "tablet" || regs[1].Form != "" {
		t.Fatalf("after reopen: %+v", regs)
	}
	if ok, err := db2.DeletePushRegistration(ctx, "phone", "push.example", "n3"); err != nil || !ok {
		t.Fatalf("delete = %v, %v; want true", ok, err)
	}
	if regs, _ := db2.PushRegistrations(ctx); len(regs) != 1 {
		t.Fatalf("after delete: %+v", regs)
	}
}
