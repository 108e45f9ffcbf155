#!/bin/bash
# The shipped units are clean under `systemd-analyze verify` (no output at all:
# verify reports unknown keys as warnings yet exits 0), and scripts/install.sh
# honours PREFIX, SYSCONFDIR and DESTDIR, keeps an edited config, and never
# reloads systemd when staging into DESTDIR.
set -eu
src=$(cd "${VQ_SOURCE:-$(dirname "$0")/../..}" && pwd)
build=$(cd "${VQ_BUILD:-$src/build}" && pwd)
if ! command -v systemd-analyze >/dev/null; then
	echo "SKIP: systemd-analyze is not installed (Debian package systemd, scripts/deps.txt)"
	exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# A real install under a private prefix; the unit's paths point into it.
PREFIX=$work/usr SYSCONFDIR=$work/etc UNITDIR=$work/units sh "$src/scripts/install.sh" "$build" \
	>"$work/install.log"
grep -q "daemon-reload" "$work/install.log" && [ ! -d /run/systemd/system ] &&
	fail "install.sh reloaded systemd although it is not running"
unit=$work/units/veloq@.service
[ -f "$unit" ] || fail "no unit installed"
grep -q '@[A-Z]*@' "$unit" && fail "unsubstituted placeholders in $unit"
grep -q "^ExecStart=$work/usr/bin/veloq-%i --config $work/etc/veloq/%i.ini$" "$unit" ||
	fail "ExecStart does not use PREFIX/SYSCONFDIR: $(grep ExecStart "$unit")"

napps=0
for bin in "$build"/apps/veloq-*; do
	app=${bin##*/veloq-}
	[ -x "$work/usr/bin/veloq-$app" ] || fail "veloq-$app not installed"
	[ -f "$work/etc/veloq/$app.ini" ] || fail "$app.ini not installed"
	# Verify the instance each app runs as; the template resolves from the unit's folder.
	out=$(cd "$work/units" && systemd-analyze verify --man=no "./veloq@$app.service" 2>&1) ||
		fail "systemd-analyze verify veloq@$app.service failed: $out"
	[ -z "$out" ] || fail "systemd-analyze verify veloq@$app.service is not clean: $out"
	echo "verify veloq@$app.service: clean"
	# The unit's reload check runs the binary with the installed config: it must pass.
	"$work/usr/bin/veloq-$app" --config "$work/etc/veloq/$app.ini" --check-config >/dev/null ||
		fail "--check-config rejects the installed $app.ini"
	napps=$((napps + 1))
done
[ "$napps" -gt 0 ] || fail "no apps built in $build/apps"

# The verify test can fail: a misspelt key is reported.
sed 's/^LimitNOFILE=/LimitNOFILES=/' "$unit" >"$work/units/veloq@.service.bad"
mkdir "$work/bad" && mv "$work/units/veloq@.service.bad" "$work/bad/veloq@.service"
out=$(cd "$work/bad" && systemd-analyze verify --man=no ./veloq@echo.service 2>&1 || true)
case $out in *LimitNOFILES*) ;; *) fail "verify did not catch a bad key: $out" ;; esac

# An edited config survives a reinstall; DESTDIR stages without touching the system.
echo "; edited" >>"$work/etc/veloq/echo.ini"
PREFIX=$work/usr SYSCONFDIR=$work/etc UNITDIR=$work/units sh "$src/scripts/install.sh" "$build" \
	>/dev/null
grep -q "; edited" "$work/etc/veloq/echo.ini" || fail "reinstall overwrote an edited config"
DESTDIR=$work/stage PREFIX=/usr sh "$src/scripts/install.sh" "$build" >"$work/stage.log"
[ -x "$work/stage/usr/bin/veloq-echo" ] && [ -f "$work/stage/usr/lib/systemd/system/veloq@.service" ] &&
	[ -f "$work/stage/etc/veloq/echo.ini" ] || fail "DESTDIR layout wrong: $(find "$work/stage")"
grep -q "^ExecStart=/usr/bin/veloq-%i --config /etc/veloq/%i.ini$" \
	"$work/stage/usr/lib/systemd/system/veloq@.service" || fail "DESTDIR leaked into the unit"
grep -q daemon-reload "$work/stage.log" && fail "install.sh reloaded systemd for a DESTDIR install"
echo ok
