"""The turn-end model answers the same on every x86 CPU (TURN_END_MODEL_EXACT, endpointing.py).

On CPUs without VNNI onnxruntime's fast int8 kernels saturate and the int8 model's scores move
by up to 0.94. The real check runs the model under qemu's Haswell (AVX2, no VNNI), whatever
CPU CI has: `auto` must notice and answer as exact arithmetic does here, and the fast kernels
must answer otherwise there (else the emulated CPU shows nothing and the check proves nothing).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from server.pipeline import endpointing
from server.pipeline.endpointing import SmartTurn
from tests.conftest import ROOT
from tests.support.speech import with_pause

# Run under the emulated CPU: the model's answer to the features in argv[1], per setting.
EMULATED = """
import json, sys
import numpy as np
from server.pipeline import endpointing
features = {"input_features": np.load(sys.argv[1])}
answers = {}
for exact in ("auto", "false"):
    session, summed_exactly = endpointing._session(1, exact)
    score = float(session.run(None, features)[0].reshape(-1)[0])
    answers[exact] = {"score": score, "exact": summed_exactly}
print(json.dumps(answers))
"""


class FakeSession:
    def __init__(self, answer: float):
        self.answer = answer

    def run(self, _outputs, _inputs):
        return [np.array([[self.answer]], dtype=np.float32)]


@pytest.mark.parametrize(
    ("exact", "fast_answer", "chosen"),
    [
        ("auto", 0.127, "fast"),  # the kernels agree: the fast one is kept
        ("auto", 0.040, "exact"),  # they differ: this CPU saturates
        ("true", 0.127, "exact"),
        ("false", 0.040, "fast"),
    ],
)
def test_auto_keeps_the_fast_kernels_only_where_they_answer_exactly(
    monkeypatch, exact, fast_answer, chosen
):
    sessions = {True: FakeSession(0.127), False: FakeSession(fast_answer)}
    monkeypatch.setattr(endpointing, "_new_session", lambda threads, exact: sessions[exact])
    endpointing._session.cache_clear()
    try:
        session, summed_exactly = endpointing._session(1, exact)
    finally:
        endpointing._session.cache_clear()
    assert session is sessions[chosen == "exact"]
    assert summed_exactly == (chosen == "exact")


def test_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="exact"):
        SmartTurn(exact="maybe")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="onnxruntime's x86 int8 kernels")
def test_on_a_cpu_without_vnni_the_model_answers_as_exact_arithmetic_does(tmp_path):
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-user is missing: ./dev test installs it"
    pcm, pause_at = with_pause("I would like to speak to, the manager please.", 0.6)
    turn = pcm[: int((pause_at + 0.096) * 16000) * 2]  # the turn at its first look
    features = endpointing.input_features(turn)
    np.save(tmp_path / "features.npy", features)
    here, _ = endpointing._session(1, "true")
    exact_score = float(here.run(None, {"input_features": features})[0].reshape(-1)[0])

    emulated = subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, "-c", EMULATED, str(tmp_path / "features.npy")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    answers = json.loads(emulated.stdout.strip().splitlines()[-1])

    # The emulated CPU saturates: its fast kernels answer otherwise (0.97 against 0.03).
    assert abs(answers["false"]["score"] - exact_score) > 0.3, answers
    # `auto` notices at load and answers as exact arithmetic does (to the last digit on the
    # machine where this was written; the float parts may round otherwise on another CPU).
    assert answers["auto"]["exact"] is True
    assert abs(answers["auto"]["score"] - exact_score) < 1e-4, answers
