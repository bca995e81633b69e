# Sourced by the fetch_*_wheels.sh scripts: `fetch_wheels SPEC...` downloads each wheel for the
# GPU machine (Python 3.12, x86_64, no network there) into $DEST (default .whl/), without
# dependencies, then lists what every wheel in $DEST requires, so that a requirement the
# caller's list misses shows up.
fetch_wheels() {
    local python=${PYTHON:-python3} dest=${DEST:-.whl} spec wheel requires
    mkdir -p "$dest"
    for spec in "$@"; do
        "$python" -m pip download -q --no-deps --only-binary=:all: \
            --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d "$dest" "$spec"
    done
    for wheel in "$dest"/*.whl; do
        requires=$(unzip -p "$wheel" '*.dist-info/METADATA' | grep '^Requires-Dist' \
            | grep -v 'extra ==' | sed 's/^Requires-Dist: //' | tr '\n' ' ' || true)
        echo "$(basename "$wheel"): ${requires:-(no requirements)}"
    done
    echo "total: $(du -ch "$dest"/*.whl | tail -1 | cut -f1) in $(ls "$dest"/*.whl | wc -l) wheels"
}
