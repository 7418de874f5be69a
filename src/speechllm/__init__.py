"""speechllm: speech + large language models behind one interface, offline on a CPU.

    from speechllm import Request, audio, build_cascade
    lm = build_cascade()
    reply = lm.respond(Request(audio=audio.load("question.wav")))
    print(reply.transcript, "->", reply.text, reply.timings.ttfa)
"""

from speechllm.audio import Audio
from speechllm.cascade.build import CascadeSpec, build_cascade
from speechllm.cascade.pipeline import CascadeConfig, CascadeSpeechLM
from speechllm.errors import AudioError, MissingDependency, ModelError, SpeechLLMError
from speechllm.speechlm import Message, Request, Response, SpeechLM
from speechllm.timing import Span, Timings

__all__ = [
    "Audio",
    "AudioError",
    "CascadeConfig",
    "CascadeSpec",
    "CascadeSpeechLM",
    "Message",
    "MissingDependency",
    "ModelError",
    "Request",
    "Response",
    "Span",
    "SpeechLLMError",
    "SpeechLM",
    "Timings",
    "build_cascade",
]
__version__ = "0.1.0"
