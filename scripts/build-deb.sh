#!/usr/bin/env bash
# Build the Debian package: scripts/build-deb.sh [--lint] [-o OUTDIR]
#
# Writes OUTDIR/ibgwd_<version>_all.deb (+ the .changes and .buildinfo), OUTDIR defaulting to
# dist/. The working tree (without .git, .venv, dist/ and caches) is copied to a temporary
# directory, packaging/debian/ becomes debian/ there, dpkg-buildpackage runs there, and the
# temporary directory is removed, so nothing is written outside OUTDIR. The build is
# reproducible: timestamps come from debian/changelog (SOURCE_DATE_EPOCH).
# --lint also runs `lintian -I --pedantic --fail-on error,warning` on the result (infos and
# pedantic tags are shown; only warnings and errors fail: "warning" alone would not fail on errors).
# Needs: debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools (lintian).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=$src/dist
lint=0
while (($#)); do
    case $1 in
        -o) out=$2; shift 2 ;;
        --lint) lint=1; shift ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument '$1'; accepted: --lint, -o OUTDIR" >&2; exit 64 ;;
    esac
done

# The pyenv python that may come first in PATH lacks python3-build; dpkg tools need sbin.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME

deb_version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
py_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/pyproject.toml")
if [ "$deb_version" != "$py_version" ]; then
    echo "build-deb.sh: packaging/debian/changelog says $deb_version but pyproject.toml says" \
         "$py_version; add a changelog entry (dch -v $py_version)" >&2
    exit 65
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ibgwd-deb.XXXXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/ibgwd-$deb_version"
build=$tmp/ibgwd-$deb_version
tar -C "$src" \
    --exclude=./.git --exclude=./.venv --exclude=./debian --exclude=./dist --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.pytest_cache --exclude=.hypothesis --exclude=.pybuild \
    -cf - . | tar -C "$build" -xf -
rm -rf "$build/packaging/debian/.debhelper"
cp -a "$src/packaging/debian" "$build/debian"

(cd "$build" && TMPDIR=$tmp dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1) || {
    tail -n 60 "$tmp/build.log" >&2
    echo "build-deb.sh: dpkg-buildpackage failed (log above)" >&2
    exit 1
}

mkdir -p "$out"
deb=ibgwd_${deb_version}_all.deb
arch=$(dpkg --print-architecture)
cp "$tmp/$deb" "$tmp/ibgwd_${deb_version}_${arch}.changes" \
   "$tmp/ibgwd_${deb_version}_${arch}.buildinfo" "$out/"
echo "$out/$deb"

if ((lint)); then
    # lintian leaves /tmp/mldbm-* files behind: give it a TMPDIR that the trap removes.
    mkdir "$tmp/lintian"
    TMPDIR=$tmp/lintian lintian -I --pedantic --fail-on error,warning "$out/$deb"
fi
