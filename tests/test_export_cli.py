"""``emobench export``: the artifact bench measures, loaded in a fresh process by its runtime's own API."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from emobench.runtimes.backends import BACKENDS
from tests.test_cli import assert_user_error, run

FILE_BACKENDS = ["onnxruntime", "openvino", "executorch", "litert"]

#: loads the artifact (argv[1]) with the runtime's own API, runs it on a seeded input, prints max |Δ| vs eager torch
CHECK = r"""
import sys, numpy as np, torch
from emobench.models.references import build_reference
import json
backend, path = sys.argv[1], sys.argv[2]
settings = json.load(open(path + ".json"))["run_settings"]
x = torch.randn(1, 64, 14, 14, generator=torch.Generator().manual_seed(7))
with torch.inference_mode():
    expected = build_reference("irmb")(x).numpy()
xn = x.numpy()
if backend == "onnxruntime":
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: xn})[0]
elif backend == "openvino":
    import openvino as ov
    got = ov.Core().compile_model(path, "CPU", settings)(xn)[0]
elif backend == "executorch":
    from executorch.runtime import Runtime
    program = Runtime.get().load_program(path)
    got = program.load_method("forward").execute([x])[0].numpy()
else:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], xn.reshape(inp["shape"]) if tuple(inp["shape"]) == xn.shape else xn.transpose(0, 2, 3, 1))
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    if got.shape != expected.shape:
        got = got.transpose(0, 3, 1, 2)
print(float(np.abs(got.astype(np.float32) - expected).max()))
"""


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_export_loads_in_runtime(backend, capsys, monkeypatch, tmp_path):
    if backend not in BACKENDS or BACKENDS[backend].unavailable() is not None:
        pytest.skip(f"{backend} not available")
    code, out, err = run(capsys, monkeypatch, "export", "irmb", "-B", backend, "--form", "auto",
                         "-o", str(tmp_path / "irmb"), "-f", "json")
    assert code == 0, err
    result = json.loads(out)
    path = tmp_path / f"irmb{BACKENDS[backend].suffix}"
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar == result and sidecar["artifact"] == str(path)
    assert sidecar["form"] in BACKENDS[backend].form_preference and sidecar["input_shape"] == [1, 64, 14, 14]
    assert sidecar["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sidecar["bytes"] == path.stat().st_size
    for companion in sidecar["companions"]:  # OpenVINO's .bin, same stem
        assert companion["sha256"] == hashlib.sha256(open(companion["path"], "rb").read()).hexdigest()
    assert [os.path.basename(c["path"]) for c in sidecar["companions"]] == [f"irmb{s}" for s in BACKENDS[backend].companions]
    tolerance, recorded = sidecar["parity"]["tolerance"], sidecar["parity"]["max_abs"]
    assert recorded <= tolerance
    proc = subprocess.run([sys.executable, "-c", CHECK, backend, str(path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = float(proc.stdout.strip().splitlines()[-1])
    assert fresh <= tolerance
    assert fresh <= max(10 * recorded, 1e-6)  # the same order of magnitude as the recorded parity figure


def test_export_bad_paths(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "export", "irmb", "-B", "torch", "-o", str(tmp_path / "m"))
    assert_user_error(code, err, "torch", "onnxruntime", "litert")
    code, _, err = run(capsys, monkeypatch, "export", "irmb", "-B", "onnxruntime", "-o", str(tmp_path / "nope" / "m.onnx"))
    assert_user_error(code, err, "folder not found")
    locked = tmp_path / "m.onnx"
    locked.write_bytes(b"keep")
    locked.chmod(0o444)
    code, _, err = run(capsys, monkeypatch, "export", "irmb", "-B", "onnxruntime", "-o", str(locked))
    assert_user_error(code, err, "read-only")
    assert locked.read_bytes() == b"keep"
    code, _, err = run(capsys, monkeypatch, "export", "irmb", "-B", "onnxruntime", "-o", str(tmp_path / "m.tflite"))
    assert_user_error(code, err, ".onnx")
    assert not list(tmp_path.glob("*.json"))


#: loads an int8 ONNX export in a fresh process: its quantized nodes, and its logits against eager fp32 torch on
#: the sidecar's seeded input (cosine, top-1)
CHECK_INT8 = r"""
import json, sys, numpy as np, onnx, onnxruntime as ort, torch
from emobench.models.references import build_reference
path = sys.argv[1]
side = json.load(open(path + ".json"))
x = torch.randn(side["input_shape"], generator=torch.Generator().manual_seed(1))
with torch.inference_mode():
    expected = build_reference(side["model"])(x).numpy()
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
got = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]
quantized = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(path).graph.node)
cos = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
print(json.dumps({"quantized": quantized, "cosine": cos, "same_top1": bool(got.argmax() == expected.argmax())}))
"""


def test_int8_export_loads_and_keeps_its_parity(capsys, monkeypatch, tmp_path):
    if BACKENDS["onnxruntime"].unavailable() is not None:
        pytest.skip("onnxruntime not available")
    code, out, err = run(capsys, monkeypatch, "export", "emo_tiny", "-B", "onnxruntime", "--dtype", "int8",
                         "-o", str(tmp_path / "tiny"), "-f", "json")
    assert code == 0, err
    side = json.loads(out)
    assert side["dtype"] == "int8" and side["parity"]["precision"] == "int8"
    assert side["parity"]["top1_agreement"] >= side["parity"]["min_top1_agreement"]
    assert side["parity"]["logit_cosine"] >= side["parity"]["min_logit_cosine"]
    assert side["preprocessing"]["used_for"].startswith("int8 calibration")
    path = tmp_path / "tiny.onnx"
    proc = subprocess.run([sys.executable, "-c", CHECK_INT8, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["quantized"] > 0  # the int8 artifact, not an fp32 one
    assert fresh["cosine"] >= side["parity"]["min_logit_cosine"] and fresh["same_top1"]
