"""The transformers backend (``hf:LOCAL_DIR``) with a tiny Qwen2 model built here from a config.

The model has random weights and a byte-level BPE tokenizer trained on a few sentences, both saved with
``save_pretrained`` to a temporary directory: the real load / template / generate / stream path runs
end to end, offline. Its text is noise, so tool-call parsing is tested on known strings fed to the
backend's post-processing, and the end-of-turn path with a variant whose output head is all zeros
(every logit equal, so greedy decoding picks token 0, which is the end-of-turn token).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.llm import make_backend
from agent.llm.base import ChatResult, ToolSchema
from agent.llm.hf import HFBackend, parse_reply, plain_prompt, simple_messages, template_messages
from tools.errors import LLMError, ModelUnavailableError

# the end-of-turn token first, so that it has id 0
SPECIALS = ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]
SENTENCES = [
    "A solid pulmonary nodule of 6 mm in a low risk patient needs no routine follow up.",
    "Fleischner 2017: CT at 6 to 12 months, then consider CT at 18 to 24 months.",
    "Lung-RADS category 2 means benign appearance; continue annual screening with low dose CT.",
    "BI-RADS 4 is suspicious: tissue diagnosis is recommended.",
]
# ChatML with Hermes-style tools, the shape of Qwen2.5's template
TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n"
    "{% endif %}# Tools\n<tools>\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{%- elif messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n"
    "{%- endif %}"
    "{%- for m in messages %}{% if m['role'] == 'system' %}{% continue %}{% endif %}"
    "{% if m['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m['content'] }}\n</tool_response><|im_end|>\n"
    "{% elif m['role'] == 'assistant' and m.tool_calls %}<|im_start|>assistant\n{{ m['content'] }}"
    "{% for c in m.tool_calls %}<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": "
    "{{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# a template that knows nothing of tools
BASIC_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# a template that rejects the system role (as Gemma's does)
NO_SYSTEM_TEMPLATE = ("{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
                      "{{ raise_exception('System role not supported') }}{% endif %}"
                      "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

TOOL = ToolSchema("fleischner_followup", "Fleischner 2017 follow-up for an incidental pulmonary nodule.",
                  {"type": "object", "properties": {"size_mm": {"type": "number"},
                                                    "nodule_type": {"type": "string"}},
                   "required": ["size_mm"]})
MSGS = [{"role": "system", "content": "You are a radiology assistant."},
        {"role": "user", "content": "A 6 mm solid nodule: what follow up?"}]


def _save_tokenizer(directory: Path, template: str | None) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if template is not None:
        fast.chat_template = template
    fast.save_pretrained(directory)
    assert fast.eos_token_id == 0
    return len(fast)


def _save_model(directory: Path, vocab: int, *, silent_head: bool = False) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=False, eos_token_id=0, pad_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        if silent_head:
            model.lm_head.weight.zero_()  # every logit 0: greedy picks id 0, the end-of-turn token
        else:
            model.lm_head.weight[0].zero_()  # logit 0 for end-of-turn, never the max of 320 random ones
    model.save_pretrained(directory)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Directories: tools template, basic template, no template, system-less template, stops at once."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {k: root / k for k in ("tools", "basic", "none", "nosystem", "eos")}
    templates = {"tools": TOOLS_TEMPLATE, "basic": BASIC_TEMPLATE, "none": None,
                 "nosystem": NO_SYSTEM_TEMPLATE, "eos": TOOLS_TEMPLATE}
    vocab = 0
    for key, d in dirs.items():
        vocab = _save_tokenizer(d, templates[key])
    _save_model(dirs["tools"], vocab)
    _save_model(dirs["eos"], vocab, silent_head=True)
    for key in ("basic", "none", "nosystem"):
        for f in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(dirs["tools"] / f, dirs[key] / f)
    return dirs


@pytest.fixture(scope="module")
def backend(model_dirs):
    b = HFBackend(model_dirs["tools"], timeout_s=60, max_tokens=8, device="cpu")
    yield b
    b.close()


# --- end to end ---------------------------------------------------------------------------------
def test_factory_builds_a_lazy_backend_that_generates(settings, model_dirs):
    backend = make_backend(settings.model_copy(update={"llm": f"hf:{model_dirs['tools']}", "device": "cpu",
                                                       "llm_max_tokens": 6, "llm_isolation": "inprocess"}))
    assert isinstance(backend, HFBackend) and backend.name == "hf:tools"
    assert backend._model is None  # nothing loads before the first call
    res = backend.chat(MSGS)
    assert isinstance(res, ChatResult)
    assert res.text and res.tool_calls == [] and res.parse_error is None
    assert res.completion_tokens == 6 and res.finish_reason == "length"  # settings.llm_max_tokens holds
    assert res.prompt_tokens > 10 and 0 < res.ttft_ms <= res.total_ms
    backend.close()
    assert backend._model is None


def test_by_default_the_model_runs_in_a_worker_process(settings, model_dirs, backend):
    """The same isolation as the embedded GGUF model: a crash of torch ends the turn, not the app."""
    from agent.llm.worker import WorkerBackend

    worker = make_backend(settings.model_copy(update={"llm": f"hf:{model_dirs['tools']}", "device": "cpu",
                                                      "llm_max_tokens": 6}))
    assert isinstance(worker, WorkerBackend) and worker.name == "hf:tools" and not worker.running
    try:
        pieces: list[str] = []
        res = worker.chat(MSGS, on_token=pieces.append)
        assert worker.info["device"] == "cpu" and worker.pid != __import__("os").getpid()
        assert res.text == backend.chat(MSGS, max_tokens=6).text and "".join(pieces) == res.text
    finally:
        worker.close()


def test_greedy_decoding_is_deterministic(backend):
    assert backend.chat(MSGS, max_tokens=5).text == backend.chat(MSGS, max_tokens=5).text


@pytest.mark.parametrize("n", [1, 3, 17])
def test_max_tokens_is_respected(backend, n):
    res = backend.chat(MSGS, max_tokens=n)
    assert res.completion_tokens == n and res.finish_reason == "length"


def test_streams_the_answer_token_by_token(backend):
    pieces: list[str] = []
    res = backend.chat(MSGS, on_token=pieces.append, max_tokens=12)
    assert len(pieces) >= 2 and "".join(pieces) == res.text
    assert res.ttft_ms is not None and res.ttft_ms <= res.total_ms


def test_streaming_with_tools_offered_still_streams_a_text_answer(backend):
    pieces: list[str] = []
    res = backend.chat(MSGS, [TOOL], on_token=pieces.append, max_tokens=10)
    if res.tool_calls or res.parse_error:  # pragma: no cover - random weights could open like a call
        pytest.skip("the random model's reply opened like a tool call")
    assert "".join(pieces) == res.text and res.text


def test_end_of_turn_token_stops_generation(model_dirs):
    b = HFBackend(model_dirs["eos"], timeout_s=60, max_tokens=20, device="cpu")
    pieces: list[str] = []
    res = b.chat(MSGS, [TOOL], on_token=pieces.append)
    assert res.completion_tokens == 1 and res.finish_reason == "stop"
    assert res.text == "" and res.tool_calls == [] and pieces == []


def test_timeout_is_a_clean_error_and_the_backend_recovers(model_dirs):
    b = HFBackend(model_dirs["tools"], timeout_s=0.001, max_tokens=400, device="cpu")
    with pytest.raises(LLMError, match="timed out"):
        b.chat(MSGS)
    b.timeout_s = 60
    assert b.chat(MSGS, max_tokens=2).completion_tokens == 2


def test_context_overflow_is_a_clear_error(backend):
    long = [{"role": "user", "content": "nodule " * 600}]
    with pytest.raises(LLMError, match="too long"):
        backend.chat(long)


def test_plain_prompt_path_without_a_chat_template(model_dirs):
    b = HFBackend(model_dirs["none"], timeout_s=60, max_tokens=4, device="cpu")
    prompt, stops = b.render(MSGS, [TOOL])
    assert prompt.startswith("System: You are a radiology assistant.")
    assert "fleischner_followup" in prompt and "<tool_call>" in prompt and prompt.endswith("Assistant:")
    assert "\nUser:" in stops
    pieces: list[str] = []
    res = b.chat(MSGS, on_token=pieces.append, max_tokens=6)
    assert res.completion_tokens >= 1 and "\nUser:" not in res.text
    assert "".join(pieces) == res.text  # the held-back tail is streamed at the end


# --- prompt rendering ---------------------------------------------------------------------------
def test_native_template_receives_the_tool_schemas(backend):
    prompt, stops = backend.render(MSGS, [TOOL])
    assert stops == ()
    assert prompt.count("<|im_start|>system") == 1 and '"name": "fleischner_followup"' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_the_agents_real_tool_schemas_render(backend):
    from tests.agent.fakes import default_tools

    schemas = [tool.schema() for tool in default_tools().values()]
    prompt, _ = backend.render(MSGS, schemas)
    assert all(f'"name": "{s.name}"' in prompt for s in schemas) and '"BI-RADS category' in prompt


def test_template_without_tools_gets_them_in_the_system_message(model_dirs):
    b = HFBackend(model_dirs["basic"], device="cpu")
    prompt, _ = b.render(MSGS, [TOOL])
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nYou are a radiology assistant.")
    assert "fleischner_followup" in system and "<tool_call>" in system
    assert "fleischner_followup" not in b.render(MSGS, None)[0]


def test_template_rejecting_system_role_falls_back_to_user_turns(model_dirs):
    b = HFBackend(model_dirs["nosystem"], device="cpu")
    prompt, _ = b.render(MSGS, [TOOL])
    assert "<|im_start|>system" not in prompt
    assert prompt.startswith("<|im_start|>user\nYou are a radiology assistant.")
    assert "fleischner_followup" in prompt and "A 6 mm solid nodule" in prompt


def test_tool_call_history_is_rendered_with_object_arguments(backend):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "fleischner_followup", "arguments": json.dumps({"size_mm": 6})}}
    history = MSGS + [{"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "call_1", "name": "fleischner_followup",
                       "content": "No routine follow-up [E1]"}]
    prompt, _ = backend.render(history, [TOOL])
    assert '{"name": "fleischner_followup", "arguments": {"size_mm": 6}}' in prompt
    assert "<tool_response>\nNo routine follow-up [E1]\n</tool_response>" in prompt
    # the input messages are not modified
    assert history[2]["tool_calls"][0]["function"]["arguments"] == '{"size_mm": 6}'


def test_message_helpers_for_templates():
    call = {"id": "c", "type": "function", "function": {"name": "t", "arguments": '{"a": 1}'}}
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "R", "tool_call_id": "c"}]
    converted = template_messages(msgs)
    assert converted[2]["tool_calls"][0]["function"]["arguments"] == {"a": 1} and converted[2]["content"] == ""
    simple = simple_messages(msgs, None)
    assert [m["role"] for m in simple] == ["user", "assistant", "user"]
    assert simple[0]["content"] == "S\n\nQ" and '"arguments": {"a": 1}' in simple[1]["content"]
    assert "<tool_response>\nR\n</tool_response>" in simple[2]["content"]
    plain = plain_prompt(msgs, None)
    assert plain.startswith("System: S\n\nUser: Q\n\nAssistant: <tool_call>") and plain.endswith("Assistant:")


# --- tool-call post-processing ------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "fleischner_followup", "arguments": {"size_mm": 6}}\n</tool_call>',
    '```json\n{"name": "fleischner_followup", "arguments": {"size_mm": 6}}\n```',
    '{"name": "fleischner_followup", "arguments": "{\\"size_mm\\": 6}"}',
])
def test_reply_with_a_tool_call_becomes_a_call(text):
    res = parse_reply(text, [TOOL])
    assert [(c.name, c.arguments) for c in res.tool_calls] == [("fleischner_followup", {"size_mm": 6})]
    assert res.text == "" and res.parse_error is None and res.tool_calls[0].id.startswith("call_")


def test_unknown_tool_or_broken_json_is_a_parse_error():
    res = parse_reply('<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>', [TOOL])
    assert res.tool_calls == [] and "unknown tool 'delete_all'" in res.parse_error and res.text == ""
    res = parse_reply('<tool_call>{"name": "fleischner_followup", "arguments": {size_mm: 6}</tool_call>', [TOOL])
    assert res.tool_calls == [] and "not valid JSON" in res.parse_error


def test_text_replies_and_tool_choice_none_stay_text():
    call = '<tool_call>{"name": "fleischner_followup", "arguments": {}}</tool_call>'
    assert parse_reply(call, [TOOL], "none").text == call
    assert parse_reply(call, None).tool_calls == []
    res = parse_reply("No routine follow-up is needed [E1].", [TOOL])
    assert res.text == "No routine follow-up is needed [E1]." and res.tool_calls == [] and res.parse_error is None


# --- bad input ----------------------------------------------------------------------------------
def test_missing_directory(settings, tmp_path):
    backend = make_backend(settings.model_copy(update={"llm": f"hf:{tmp_path / 'nope'}", "device": "cpu"}))
    with pytest.raises(ModelUnavailableError, match="directory not found"):
        backend.chat(MSGS)


def test_directory_without_a_model(tmp_path, model_dirs):
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        HFBackend(tmp_path, device="cpu").chat(MSGS)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(model_dirs["tools"], no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="no model weights"):
        HFBackend(no_weights, device="cpu").chat(MSGS)
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(model_dirs["tools"] / f, no_tok / f)
    with pytest.raises(ModelUnavailableError, match="no tokenizer"):
        HFBackend(no_tok, device="cpu").chat(MSGS)


def test_corrupt_weights_or_config(tmp_path, model_dirs):
    bad = tmp_path / "bad"
    shutil.copytree(model_dirs["tools"], bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError, match="could not load the model"):
        HFBackend(bad, device="cpu").chat(MSGS)
    (bad / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelUnavailableError, match="could not load"):
        HFBackend(bad, device="cpu").chat(MSGS)


def test_a_file_is_not_a_model_directory(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelUnavailableError, match="use gguf:PATH"):
        HFBackend(gguf, device="cpu").chat(MSGS)


def test_cuda_requested_without_a_gpu(model_dirs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ModelUnavailableError, match="no CUDA device"):
        HFBackend(model_dirs["tools"], device="cuda").chat(MSGS)


# --- GPU ----------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_generates_on_cuda(settings, model_dirs):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    backend = make_backend(settings.model_copy(update={"llm": f"hf:{model_dirs['tools']}", "device": "auto"}))
    pieces: list[str] = []
    res = backend.chat(MSGS, [TOOL], on_token=pieces.append, max_tokens=9)
    param = next(backend._model.parameters())
    assert param.device.type == "cuda" and param.dtype in (torch.bfloat16, torch.float16)
    assert res.completion_tokens == 9 and res.finish_reason == "length"
    if not (res.tool_calls or res.parse_error):
        assert "".join(pieces) == res.text and res.text
    eos = HFBackend(model_dirs["eos"], device="cuda").chat(MSGS)
    assert eos.completion_tokens == 1 and eos.finish_reason == "stop"
    b = HFBackend(model_dirs["tools"], timeout_s=0.001, max_tokens=400, device="cuda")
    with pytest.raises(LLMError, match="timed out"):
        b.chat(MSGS)
    backend.close()
