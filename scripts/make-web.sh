#!/usr/bin/env bash
# make web: fills web/root (or $WEB_ROOT) with the web client the bouncer
# serves with [web] root: Converse.js from the npm registry (package
# converse.js, pinned below) and this repository's web/index.html and
# web/init.js. The downloaded files are never committed (.gitignore).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=${CONVERSE_VERSION:-14.0.0}
root=${WEB_ROOT:-web/root}
say() { printf 'make web: %s\n' "$*" >&2; }

if [ "$(cat "$root/converse/VERSION" 2>/dev/null || true)" != "$version" ]; then
	if ! command -v npm >/dev/null 2>&1; then
		say "npm is needed to fetch Converse.js: run \`make deps\` as root (or apt-get install npm)"
		exit 1
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	say "fetching converse.js@$version from the npm registry"
	(cd "$tmp" && npm pack --silent --no-fund --no-audit "converse.js@$version" >/dev/null)
	tar xzf "$tmp"/converse.js-"$version".tgz -C "$tmp"
	rm -rf "$root.new"
	mkdir -p "$root.new/converse"
	cp -R "$tmp/package/dist/." "$root.new/converse/"
	# Only the minified bundle is loaded: drop source maps and the rest.
	find "$root.new/converse" -name '*.map' -delete
	rm -f "$root.new/converse/converse.js" "$root.new/converse/converse.css" "$root.new/converse/website"*.css
	cp "$tmp/package/LICENSE" "$root.new/converse/LICENSE"
	echo "$version" >"$root.new/converse/VERSION"
	rm -rf "$root"
	mv "$root.new" "$root"
fi
cp web/index.html web/init.js "$root/"
say "web client in $root (Converse.js $version); serve it with [web] root = \"$PWD/$root\""
