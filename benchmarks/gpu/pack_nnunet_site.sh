#!/usr/bin/env bash
# Pack nnU-Net and the dependencies a bare PyTorch GPU image lacks into .gpu/site.tar.xz (unpacked wheels for
# CPython 3.12, x86-64), small enough to travel with the checkout (about 39 MB). Run once, where pip can download.
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels=$(mktemp -d); site=$(mktemp -d)
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for package in nnunetv2==2.8.1 batchgenerators==0.25.5 batchgeneratorsv2==0.3.6 dynamic_network_architectures==0.4.4 \
               blosc2 ndindex pydantic pydantic-core annotated-types typing-inspection nibabel yacs graphviz \
               connected-components-3d SimpleITK; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d "$wheels" "$package"
done
for wheel in "$wheels"/*.whl; do unzip -q -o "$wheel" -d "$site"; done
# acvl_utils publishes no wheel: its (pure Python) installed copy travels
cp -r "$(python3 -c 'import acvl_utils, os; print(os.path.dirname(acvl_utils.__file__))')" "$site/"
rm -rf "$site"/nibabel/tests "$site"/nibabel/*/tests
find "$site" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p .gpu
tar -c -C "$site" . | xz -T0 -6 > .gpu/site.tar.xz
rm -rf "$wheels" "$site"
ls -la .gpu/site.tar.xz
