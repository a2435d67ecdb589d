#!/usr/bin/env bash
# Regenerates Sources/MaxQInterchange/onnx.pb.swift from ONNX's onnx.proto (Apache-2.0, shipped in
# the `onnx` Python package). The generated file is committed: building swift-protobuf's plugin
# takes about 10 minutes, so builds never run it. Needs protoc (Debian: protobuf-compiler) and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
python3 -m pip install --quiet --target "$work/py" onnx
git clone --quiet --branch 1.39.0 https://github.com/apple/swift-protobuf "$work/swift-protobuf"
(cd "$work/swift-protobuf" && swift build -c release --product protoc-gen-swift)
cp "$work/py/onnx/onnx.proto" "$work/"
(cd "$work" && protoc --plugin="$work/swift-protobuf/.build/release/protoc-gen-swift" --swift_out=. \
    --swift_opt=Visibility=Public onnx.proto)
cp "$work/onnx.pb.swift" Sources/MaxQInterchange/onnx.pb.swift
rm -rf "$work"
echo "Sources/MaxQInterchange/onnx.pb.swift regenerated"
