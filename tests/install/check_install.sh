#!/usr/bin/env bash
# check_install.sh MODE BUILD SOURCE PREFIX LIBDIR DEFAULT_LIBRARY SANITIZE CC
# MODE: pkgconfig | subproject | cmake (tests/install/meson.build).
# Exit 0 pass, 1 fail, 77 skip (meson's code).
set -euo pipefail
mode=$1 build=$2 src=$3 prefix=$4 libdir=$5 kind=$6 san=$7 cc=$8
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crdt-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A consumer of a sanitized libcrdt needs the sanitizer runtime too.
sanflags=""
[ "$san" != none ] && sanflags="-fsanitize=$san"

# `meson install --destdir`, as the README's `sudo meson install` but into
# $tmp/root. The three tests run in parallel and meson install rewrites
# meson-logs/install-log.txt, so one at a time.
install_destdir() {
	root=$tmp/root
	(
		flock 9
		meson install -C "$build" --no-rebuild --destdir "$root" \
		    >"$tmp/install.log" 2>&1
	) 9>"$build/meson-private/install-test.lock" ||
	    { cat "$tmp/install.log" >&2; fail "meson install --destdir"; }
	lib=$root$prefix/$libdir
	for f in "$lib/pkgconfig/crdt.pc" "$lib/cmake/crdt/crdtConfig.cmake" \
	    "$lib/cmake/crdt/crdtConfigVersion.cmake" \
	    "$root$prefix/include/crdt/crdt.h" \
	    "$root$prefix/include/crdt/version.h"; do
		[ -f "$f" ] || fail "not installed: $f"
	done
}

case $mode in
pkgconfig)
	install_destdir
	export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
	pkg-config --exists crdt || fail "pkg-config does not find crdt"
	[ "$(pkg-config --modversion crdt)" = "$(sed -n \
	    's/^#define CRDT_VERSION_STRING "\(.*\)"$/\1/p' \
	    "$root$prefix/include/crdt/version.h")" ] ||
	    fail "crdt.pc version differs from version.h"
	# The README's build line, warnings as errors.
	if [ "$kind" != static ]; then
		# shellcheck disable=SC2046,SC2086
		$cc -std=c11 -Wall -Wextra -Werror $sanflags \
		    "$src/docs/examples/readme_example.c" -o "$tmp/example" \
		    $(pkg-config --cflags --libs crdt) ||
		    fail "README build line"
		out=$(LD_LIBRARY_PATH=$lib "$tmp/example") ||
		    fail "README example exited $?"
		[ "$out" = "b sees: hello" ] || fail "README example printed: $out"
		readelf -d "$tmp/example" | grep -q 'NEEDED.*libcrdt\.so\.0' ||
		    fail "example not linked to libcrdt.so.0"
	fi
	# Static: Requires.private must bring libsodium, msgpack, sqlite3.
	if [ "$kind" != shared ]; then
		libs=$(pkg-config --static --libs crdt)
		for l in -lsodium -lmsgpackc -lsqlite3; do
			case " $libs " in *" $l "*) ;;
			*) fail "pkg-config --static --libs crdt lacks $l: $libs" ;;
			esac
		done
		# shellcheck disable=SC2046,SC2086
		$cc -std=c11 -Wall -Wextra -Werror $sanflags \
		    "$src/docs/examples/readme_example.c" -o "$tmp/example-static" \
		    $(pkg-config --cflags crdt) \
		    $(echo " $libs " | sed 's/ -lcrdt / -Wl,-Bstatic -lcrdt -Wl,-Bdynamic /') ||
		    fail "static build with pkg-config --static"
		if readelf -d "$tmp/example-static" | grep -q 'NEEDED.*libcrdt'; then
			fail "static example still needs libcrdt.so"
		fi
		out=$("$tmp/example-static") || fail "static example exited $?"
		[ "$out" = "b sees: hello" ] || fail "static example printed: $out"
	fi
	echo "pkg-config: README example built and ran against the DESTDIR install"
	;;
subproject)
	# The parent project of docs/examples/subproject, with this source
	# tree as subprojects/libcrdt (not "crdt": the wrap's [provide] maps
	# the name). --force-fallback-for: an installed crdt.pc must not
	# be taken instead.
	cp -r "$src/docs/examples/subproject" "$tmp/parent"
	ln -s "$src" "$tmp/parent/subprojects/libcrdt"
	meson setup "$tmp/pb" "$tmp/parent" --force-fallback-for=crdt \
	    -Dbuildtype=plain >"$tmp/setup.log" 2>&1 ||
	    { cat "$tmp/setup.log" >&2; fail "parent meson setup"; }
	ninja -C "$tmp/pb" >"$tmp/ninja.log" 2>&1 ||
	    { cat "$tmp/ninja.log" >&2; fail "parent build"; }
	out=$("$tmp/pb/consumer") || fail "consumer exited $?"
	case $out in "libcrdt "*": consumer") ;;
	*) fail "consumer printed: $out" ;; esac
	# Only the library (shared and/or static) and the consumer.
	targets=$(meson introspect --targets "$tmp/pb" | python3 -c '
import json, sys
print(" ".join(sorted(t["name"] for t in json.load(sys.stdin))))')
	[ "$targets" = "consumer crdt" ] || [ "$targets" = "consumer crdt crdt" ] ||
	    fail "parent built more than the library: $targets"
	tests=$(meson introspect --tests "$tmp/pb" | python3 -c '
import json, sys
print(" ".join(t["name"] for t in json.load(sys.stdin)))')
	[ -z "$tests" ] || fail "parent runs libcrdt's tests: $tests"
	# Asked for, the tests come back (configure only: building them is
	# the top-level suite's job).
	meson setup "$tmp/pb2" "$tmp/parent" --force-fallback-for=crdt \
	    -Dlibcrdt:tests=enabled >"$tmp/setup2.log" 2>&1 ||
	    { cat "$tmp/setup2.log" >&2; fail "parent setup with tests"; }
	meson introspect --targets "$tmp/pb2" | python3 -c '
import json, sys
sys.exit(0 if any(t["name"] == "test_error" for t in json.load(sys.stdin)) else 1)' ||
	    fail "-Dlibcrdt:tests=enabled did not bring the tests"
	echo "subproject: parent built libcrdt only ($targets), consumer ran"
	;;
cmake)
	command -v cmake >/dev/null 2>&1 ||
	    { echo "cmake not installed: skipped"; exit 77; }
	install_destdir
	# The consumer of docs/examples/cmake.
	cmake -S "$src/docs/examples/cmake" -B "$tmp/cb" \
	    -DCMAKE_PREFIX_PATH="$root$prefix" -DCMAKE_C_COMPILER="${cc##* }" \
	    -DCMAKE_C_FLAGS="$sanflags" >"$tmp/cmake.log" 2>&1 ||
	    { cat "$tmp/cmake.log" >&2; fail "cmake configure"; }
	cmake --build "$tmp/cb" >"$tmp/build.log" 2>&1 ||
	    { cat "$tmp/build.log" >&2; fail "cmake build"; }
	out=$(LD_LIBRARY_PATH=$lib "$tmp/cb/consumer") ||
	    fail "cmake consumer exited $?"
	case $out in "libcrdt "*": consumer") ;;
	*) fail "cmake consumer printed: $out" ;; esac
	if [ "$kind" != static ]; then
		readelf -d "$tmp/cb/consumer" | grep -q 'NEEDED.*libcrdt\.so\.0' ||
		    fail "crdt::crdt is not the shared library"
	fi
	# crdt::crdt_static: libcrdt.a and its dependencies through pkg-config.
	if [ "$kind" != shared ]; then
		mkdir -p "$tmp/static"
		cat >"$tmp/static/CMakeLists.txt" <<-CM
		cmake_minimum_required(VERSION 3.16)
		project(static_consumer C)
		find_package(crdt REQUIRED)
		add_executable(consumer "$src/docs/examples/cmake/main.c")
		target_link_libraries(consumer PRIVATE crdt::crdt_static)
		CM
		cmake -S "$tmp/static" -B "$tmp/sb" \
		    -DCMAKE_PREFIX_PATH="$root$prefix" -DCMAKE_C_COMPILER="${cc##* }" \
		    -DCMAKE_C_FLAGS="$sanflags" >"$tmp/cmake-static.log" 2>&1 &&
		cmake --build "$tmp/sb" >>"$tmp/cmake-static.log" 2>&1 ||
		    { cat "$tmp/cmake-static.log" >&2; fail "crdt::crdt_static build"; }
		if readelf -d "$tmp/sb/consumer" | grep -q 'NEEDED.*libcrdt'; then
			fail "crdt::crdt_static consumer needs libcrdt.so"
		fi
		out=$("$tmp/sb/consumer") || fail "static cmake consumer exited $?"
		case $out in "libcrdt "*": consumer") ;;
		*) fail "static cmake consumer printed: $out" ;; esac
	fi
	# The version file: 0.1 and 0.1.0 accepted, another minor or major
	# refused, and a component libcrdt does not have refused.
	ver=$(sed -n 's/^#define CRDT_VERSION_STRING "\(.*\)"$/\1/p' \
	    "$root$prefix/include/crdt/version.h")
	IFS=. read -r major minor patch <<<"$ver"
	probe() { # probe WANT COMPONENTS -> prints FOUND or NOTFOUND
		mkdir -p "$tmp/probe"
		cat >"$tmp/probe/CMakeLists.txt" <<-CM
		cmake_minimum_required(VERSION 3.16)
		project(probe C)
		find_package(crdt $1 $2 QUIET)
		if(crdt_FOUND AND TARGET crdt::crdt)
		  message(STATUS "probe=FOUND")
		else()
		  message(STATUS "probe=NOTFOUND")
		endif()
		CM
		rm -rf "$tmp/probe/b"
		cmake -S "$tmp/probe" -B "$tmp/probe/b" \
		    -DCMAKE_PREFIX_PATH="$root$prefix" 2>&1 |
		    sed -n 's/^-- probe=//p'
	}
	expect() {
		got=$(probe "$2" "${3:-}")
		[ "$got" = "$1" ] ||
		    fail "find_package(crdt $2 ${3:-}): $got, want $1"
	}
	expect FOUND ""
	expect FOUND "$major.$minor"
	expect FOUND "$ver"
	expect NOTFOUND "$major.$((minor + 1))"
	expect NOTFOUND "$((major + 1)).0"
	expect NOTFOUND "$major.$minor.$((patch + 1))"
	if [ "$major" = 0 ] && [ "$minor" -gt 0 ]; then
		expect NOTFOUND "0.$((minor - 1))"
	fi
	expect NOTFOUND "" "COMPONENTS nosuch"
	echo "cmake: find_package(crdt) consumers (crdt::crdt, crdt::crdt_static) built and ran; version rules hold"
	;;
*)
	fail "unknown mode $mode"
	;;
esac
