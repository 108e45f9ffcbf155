#!/bin/sh
# Install veloq apps as systemd services: the binaries, the veloq@.service
# template, default configs in $SYSCONFDIR/veloq/ (existing files are kept), and
# DEPLOY.md; then `systemctl daemon-reload` when systemd runs this machine.
#
#   scripts/install.sh [BUILD_DIR]        (default: ./build)
#
# Environment: PREFIX (/usr/local), DESTDIR (staging root, for packaging),
# SYSCONFDIR (/etc), UNITDIR ($PREFIX/lib/systemd/system), BINDIR ($PREFIX/bin),
# DOCDIR ($PREFIX/share/doc/veloq).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BINDIR=${BINDIR:-$PREFIX/bin}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/veloq}

set -- "$build"/apps/veloq-*
if [ ! -x "$1" ]; then
	echo "install.sh: no apps in $build/apps; build first:" >&2
	echo "  cmake -S $src -B $build -DCMAKE_BUILD_TYPE=Release && cmake --build $build" >&2
	exit 1
fi

install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$SYSCONFDIR/veloq" \
	"$DESTDIR$DOCDIR"
for bin in "$@"; do
	app=${bin##*/veloq-}
	install -m 0755 "$bin" "$DESTDIR$BINDIR/veloq-$app"
	echo "installed $DESTDIR$BINDIR/veloq-$app"
	conf=$DESTDIR$SYSCONFDIR/veloq/$app.ini
	if [ -e "$conf" ]; then
		echo "kept      $conf (the shipped default is $src/configs/$app.ini)"
	elif [ -f "$src/configs/$app.ini" ]; then
		install -m 0644 "$src/configs/$app.ini" "$conf"
		echo "installed $conf"
	fi
done

sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" \
	"$src/scripts/systemd/veloq@.service.in" >"$DESTDIR$UNITDIR/veloq@.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/veloq@.service.tmp"
mv "$DESTDIR$UNITDIR/veloq@.service.tmp" "$DESTDIR$UNITDIR/veloq@.service"
echo "installed $DESTDIR$UNITDIR/veloq@.service"
install -m 0644 "$src/docs/DEPLOY.md" "$DESTDIR$DOCDIR/DEPLOY.md"

# sd_booted(): /run/systemd/system exists only when systemd is PID 1.
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	systemctl daemon-reload
	echo "systemctl daemon-reload: done; start with: systemctl enable --now veloq@<app>"
fi
