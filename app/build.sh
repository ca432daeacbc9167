#!/usr/bin/env bash
# Build once, ship everywhere: bash app/build.sh OUTDIR
#
# OUTDIR receives
#   brigade_api-<version>-py3-none-any.whl   the application
#   <dependency wheels>                      every runtime dependency, exactly as pinned
#                                            and hash-checked by requirements.lock
#   requirements.lock                        the pins with hashes (for --require-hashes installs)
#   brigade-frontend-<version>.tar.gz        static front end with content-hashed asset names
#   VERSION, BUILD_INFO.json                 what was built, from which commit, when
#   SHA256SUMS                               checksums of all of the above
#
# A host without PyPI installs it with
#   python3 -m venv /opt/brigade/venv
#   /opt/brigade/venv/bin/pip install --no-index --find-links OUTDIR brigade-api
# The script proves that itself in a scratch virtualenv before it finishes.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$(realpath -m "$1")"
cd "$APP_DIR"

VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/brigade_api/__init__.py)"
[ -n "$VERSION" ] || { echo "cannot read __version__" >&2; exit 1; }

if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  if [ -f "$OUT/BUILD_INFO.json" ]; then
    rm -rf "${OUT:?}"/*   # a previous build of ours: start clean
  else
    echo "refusing to write into non-empty $OUT (not a previous brigade build)" >&2
    exit 1
  fi
fi
mkdir -p "$OUT"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "==> building brigade-api $VERSION into $OUT"
python3 -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install --quiet "build>=1.2"

# 1. The application wheel (the sdist is built first, so the wheel comes from
#    exactly what a source release would contain).
"$work/build-venv/bin/python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; exit 1; }
cp "$work"/dist/brigade_api-"$VERSION"-*.whl "$OUT/"

# 2. The wheelhouse: every locked dependency, hash-verified.
"$work/build-venv/bin/pip" wheel --quiet --require-hashes --no-deps --prefer-binary \
  --wheel-dir "$OUT" -r requirements.lock
cp requirements.lock "$OUT/requirements.lock"

# 3. Prove the artifact installs offline, then use it to export the front end.
#    No pip configuration at all (PIP_CONFIG_FILE=/dev/null, no PIP_* variables), so
#    nothing but OUTDIR can satisfy the install, exactly as on a host.
python3 -m venv "$work/verify-venv"
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
  PIP_CONFIG_FILE=/dev/null \
  "$work/verify-venv/bin/pip" install --quiet --no-index --find-links "$OUT" "brigade-api==$VERSION"
"$work/verify-venv/bin/pip" check
"$work/verify-venv/bin/python" -c "import brigade_api.main, brigade_api.migrate, uvicorn_worker, psycopg; print('import ok')"
"$work/verify-venv/bin/brigade-api" --version
installed="$("$work/verify-venv/bin/brigade-api" version)"
[ "$installed" = "$VERSION" ] || { echo "installed version $installed != $VERSION" >&2; exit 1; }

"$work/verify-venv/bin/brigade-api" export-frontend "$work/frontend" >/dev/null
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' \
  -C "$work/frontend" -czf "$OUT/brigade-frontend-$VERSION.tar.gz" .

# 4. Provenance and checksums.
commit="$(git -C "$APP_DIR" rev-parse --verify --quiet HEAD 2>/dev/null || echo unknown)"
dirty=false
if [ "$commit" != unknown ] && [ -n "$(git -C "$APP_DIR" status --porcelain -- . 2>/dev/null)" ]; then
  dirty=true
fi
echo "$VERSION" >"$OUT/VERSION"
python3 - "$OUT" "$VERSION" "$commit" "$dirty" <<'PY'
import datetime, json, pathlib, platform, sys
out, version, commit, dirty = sys.argv[1:]
wheels = sorted(p.name for p in pathlib.Path(out).glob("*.whl"))
info = {
    "name": "brigade-api",
    "version": version,
    "git_commit": commit,
    "git_dirty": dirty == "true",
    "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "python": platform.python_version(),
    "platform": platform.platform(),
    "app_wheel": next(w for w in wheels if w.startswith("brigade_api-")),
    "wheels": wheels,
}
pathlib.Path(out, "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
PY
(cd "$OUT" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | sort \
  | xargs sha256sum >SHA256SUMS)
(cd "$OUT" && sha256sum --quiet -c SHA256SUMS)

echo "==> done: $(ls "$OUT"/*.whl | wc -l) wheels, version $VERSION, commit $commit"
echo "    install: pip install --no-index --find-links $OUT brigade-api"
