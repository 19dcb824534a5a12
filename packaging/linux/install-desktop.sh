#!/bin/sh
# Add CanvasAI to the desktop's application menu: the .desktop launcher, the icons (hicolor
# theme) and the AppStream metadata, pointing at the canvasai executable next to this script.
#
#   ./install-desktop.sh              # for the current user (~/.local/share)
#   ./install-desktop.sh --bin        # also link canvasai and canvasai-engine into ~/.local/bin
#   sudo PREFIX=/usr/local/share ./install-desktop.sh     # for all users
#   ./install-desktop.sh --uninstall  # remove what was installed (same PREFIX)
#
# Run it from the unpacked bundle (dist/canvasai/ after `python packaging/build.py`); move the
# bundle first if you want it elsewhere (e.g. /opt/canvasai or ~/Applications/canvasai).
set -eu

APP_ID=io.github.canvasai.CanvasAI
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}}
BIN_DIR=${BIN_DIR:-$HOME/.local/bin}
SHARE="$HERE/share"
SIZES="16 24 32 48 64 128 256 512"

refresh() {
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$PREFIX/applications" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$PREFIX/icons/hicolor" || true
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$PREFIX/applications/$APP_ID.desktop" "$PREFIX/metainfo/$APP_ID.metainfo.xml" \
          "$PREFIX/icons/hicolor/scalable/apps/$APP_ID.svg"
    for s in $SIZES; do rm -f "$PREFIX/icons/hicolor/${s}x${s}/apps/$APP_ID.png"; done
    for b in canvasai canvasai-engine; do
        [ -L "$BIN_DIR/$b" ] && rm -f "$BIN_DIR/$b"
    done
    refresh
    echo "CanvasAI removed from $PREFIX"
    exit 0
fi

[ -x "$HERE/canvasai" ] || { echo "error: $HERE/canvasai not found: run this script from the bundle" >&2; exit 2; }

mkdir -p "$PREFIX/applications" "$PREFIX/metainfo" "$PREFIX/icons/hicolor/scalable/apps"
# Exec needs the absolute path; quoted for the Desktop Entry spec (\ " ` $ escaped).
exe=$(printf '%s' "$HERE/canvasai" | sed -e 's/[\\"`$]/\\\\&/g')
sed -e "s|^Exec=.*|Exec=\"$exe\" %f|" -e "s|^TryExec=.*|TryExec=$HERE/canvasai|" \
    "$SHARE/applications/$APP_ID.desktop" > "$PREFIX/applications/$APP_ID.desktop"
chmod 644 "$PREFIX/applications/$APP_ID.desktop"
cp "$SHARE/metainfo/$APP_ID.metainfo.xml" "$PREFIX/metainfo/"
cp "$SHARE/icons/hicolor/scalable/apps/$APP_ID.svg" "$PREFIX/icons/hicolor/scalable/apps/"
for s in $SIZES; do
    mkdir -p "$PREFIX/icons/hicolor/${s}x${s}/apps"
    cp "$SHARE/icons/hicolor/${s}x${s}/apps/$APP_ID.png" "$PREFIX/icons/hicolor/${s}x${s}/apps/"
done
if [ "${1:-}" = "--bin" ]; then
    mkdir -p "$BIN_DIR"
    ln -sf "$HERE/canvasai" "$BIN_DIR/canvasai"
    ln -sf "$HERE/canvasai-engine" "$BIN_DIR/canvasai-engine"
    echo "linked canvasai and canvasai-engine into $BIN_DIR"
fi
refresh
echo "CanvasAI added to the application menu ($PREFIX/applications/$APP_ID.desktop)"
