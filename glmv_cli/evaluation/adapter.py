"""glmv's lm-eval model adapter, registered as ``glmv``.

Two users: ``glmv eval`` (:mod:`glmv_cli.evaluation.runner`) hands :class:`GenRequest` s straight to
a :class:`Generator`; lm-eval hands a multimodal generative task's requests to ``generate_until`` as
``(context, gen_kwargs, {"visual": [PIL images]})``, which :class:`GlmvLM` turns into GenRequests.
A request is the user turn with one ``<image>`` / ``<video>`` placeholder per medium, the PIL
images and the video files. :class:`HFGenerator` makes a GLM chat prompt of it
(``[gMASK]<sop><|user|>\\n…<|assistant|>\\n``): images expanded to their token counts, videos
through GLM's native video input (:func:`glmv_cli.modeling.video_processor.prepare_video`: 2 fps
sampling, frame pairs merged over time, each pair followed by its timestamp in seconds). The raw
responses (with ``<think>``) come back; the caller extracts the answer as GLM does.

Generation is ``glmv_cli.generation.HFEngine`` (batched, KV cache, one prefill per prompt), the same
engine RL uses, with the paper's academic setting by default: a thinking budget of 8192 tokens,
then ``</think><answer>`` is forced (GLM-4.5V style: ``</think>``) and the answer gets up to 8192
more tokens. Decoding is greedy (temperature 0) unless configured.

Failed generations are counted, never hidden: a batch that raises is retried one request at a time,
and a request that still raises gets an empty response (it scores 0) with ``finish_reason="error"``.
:attr:`GlmvLM.stats` counts, per task, requests and their finish reasons (``stop``, ``length``: hit
the token cap without an answer, ``forced``, ``error``); ``glmv eval`` writes them beside the scores.

Stopping is the engine's: GLM's stop tokens (``<|endoftext|>``, ``<|user|>``, ``<|observation|>``)
and the budgets above; a task's ``until`` strings and ``max_gen_toks`` are not used, because cutting a
thinking model's output at a task's stop string would cut its reasoning, not its answer.

``loglikelihood`` requests (multiple-choice by likelihood) are refused with a GlmvError: the paper
evaluates every benchmark generatively, and so do glmv's tasks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from glmv_cli.errors import GlmvError

ACADEMIC_THINKING_BUDGET = 8192
ACADEMIC_ANSWER_BUDGET = 8192


@dataclass
class GenRequest:
    """One prompt: the user turn (``<image>`` placeholders) and its images, in order."""

    id: str
    text: str
    images: list = field(default_factory=list)
    task: str = ""
    system: str | None = None
    videos: list = field(default_factory=list)     # video files, in placeholder order
    video_max_frames: int | None = None            # cap on sampled frames (even), None: the processor's


@dataclass
class Generation:
    text: str
    finish_reason: str            # stop | length | forced | error
    error: str | None = None
    num_tokens: int = 0


@dataclass
class GenSettings:
    thinking_budget: int | None = ACADEMIC_THINKING_BUDGET
    answer_budget: int = ACADEMIC_ANSWER_BUDGET
    max_new_tokens: int | None = None   # default: thinking_budget + answer_budget
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    enable_thinking: bool = True

    def validate(self) -> None:
        if self.thinking_budget is not None and self.thinking_budget < 1:
            raise GlmvError(f"--thinking-budget must be >= 1, got {self.thinking_budget}")
        if self.answer_budget < 1:
            raise GlmvError(f"--answer-budget must be >= 1, got {self.answer_budget}")
        if self.temperature < 0:
            raise GlmvError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise GlmvError(f"--top-p must be in (0, 1], got {self.top_p}")

    @property
    def total_new_tokens(self) -> int:
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return (self.thinking_budget or 0) + self.answer_budget


class Generator(Protocol):
    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]: ...


class ScriptedGenerator:
    """Known outputs for tests and dry runs: ``script`` maps a substring of the prompt text to a
    response or to a callable ``GenRequest -> str`` (first match in insertion order wins), or is
    itself such a callable."""

    def __init__(self, script: dict[str, str] | Callable[[GenRequest], str], default: str = ""):
        self.script = script
        self.default = default
        self.seen: list[GenRequest] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        out = []
        for r in requests:
            self.seen.append(r)
            if callable(self.script):
                text = self.script(r)
            else:
                text = next((v for k, v in self.script.items() if k in r.text), self.default)
                if callable(text):
                    text = text(r)
            out.append(Generation(text=text, finish_reason="stop"))
        return out


class HFGenerator:
    """Generation with the rollout engine over a loaded glmv / transformers GLM-4V model."""

    def __init__(self, model, processor, settings: GenSettings, *, batch_size: int = 8, style: str | None = None,
                 model_tag: str = "eval", engine: Any = None, model_type: str | None = None):
        """``engine``: any engine of the rollout contract (default: an HFEngine over ``model``); with
        a ``ServerEngine`` the model is not needed (``model`` None, ``model_type`` given)."""
        from glmv_cli.data.template import ChatFormat
        from glmv_cli.generation import HFEngine

        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.settings = settings
        mt = model_type or model.config.model_type
        self.format = ChatFormat.of(processor, mt, style or "auto")
        self.style = self.format.style
        self.engine = engine if engine is not None else HFEngine(model, self.tokenizer, batch_size=batch_size,
                                                                 model_tag=model_tag)

    def _media(self, req: GenRequest):
        """(pixel rows, grids, image token counts, video layouts) in placeholder order; a video
        travels as its frame pairs on the image path (``split_video_grid``), as in training packs."""
        import re

        import torch

        from glmv_cli.data.video import VideoSettings
        from glmv_cli.modeling.video_processor import prepare_video, split_video_grid, video_processor_for

        n_img, n_vid = req.text.count("<image>"), req.text.count("<video>")
        if (n_img, n_vid) != (len(req.images), len(req.videos)):
            raise GlmvError(f"the prompt has {n_img} <image> / {n_vid} <video> placeholder(s) but the request "
                            f"gave {len(req.images)} image(s) / {len(req.videos)} video(s)")
        images, videos = iter(req.images), iter(req.videos)
        rows, grids, counts, layouts = [], [], [], []
        merge = int(getattr(self.image_processor, "merge_size", 2))
        for tok in re.findall(r"<image>|<video>", req.text):
            if tok == "<image>":
                enc = self.image_processor(images=[next(images)], return_tensors="pt")
                rows.append(enc["pixel_values"])
                grids.append(enc["image_grid_thw"].reshape(-1, 3))
                counts.append(int(enc["image_grid_thw"].prod().item()) // (merge * merge))
            else:
                vp = video_processor_for(self.image_processor)
                vs = VideoSettings(fps=vp.fps, max_duration=vp.max_duration, max_frames=req.video_max_frames)
                v = prepare_video(next(videos), vp, vs)
                rows.append(torch.from_numpy(v.pixel_values_videos))
                grids.append(torch.tensor(split_video_grid(v.grid)))
                layouts.append(v.layout)
        return rows, grids, counts, layouts

    def _prompt(self, req: GenRequest):
        import torch

        from glmv_cli.generation import Prompt, ServerEngine, TextPrompt, VLLMEngine

        messages = ([{"role": "system", "content": req.system}] if req.system else []) + \
            [{"role": "user", "content": req.text}]
        if req.videos and isinstance(self.engine, (ServerEngine, VLLMEngine)):
            raise GlmvError("a video prompt needs --engine hf: GLM's native video input (frame pairs with "
                            "timestamps) is built in this process and does not travel to another engine")
        if isinstance(self.engine, VLLMEngine):  # vLLM renders images itself: text + PIL images
            text = self.format.prompt_text(messages, enable_thinking=self.settings.enable_thinking)
            return TextPrompt(req.id, text, list(req.images))
        rows, grids, counts, layouts = self._media(req)
        pixel_values = torch.cat(rows) if rows else None
        grid = torch.cat(grids) if grids else None
        ids, _, _ = self.format.arrays(self.tokenizer, messages, image_token_counts=counts, video_layouts=layouts,
                                       add_generation_prompt=True, enable_thinking=self.settings.enable_thinking)
        return Prompt(id=req.id, input_ids=ids.tolist(), pixel_values=pixel_values, image_grid_thw=grid,
                      messages=messages, images=[_image_bytes(im) for im in req.images],
                      enable_thinking=self.settings.enable_thinking)

    def _params(self):
        from glmv_cli.generation import SamplingParams

        s = self.settings
        return SamplingParams(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.total_new_tokens,
                              thinking_budget=s.thinking_budget, answer_budget=s.answer_budget, style=self.style)

    def _run(self, prompts: list) -> list[Generation]:
        outs = self.engine.generate(prompts, self._params(), n=1, seed=self.settings.seed)
        res = []
        for group in outs:
            r = group[0]
            finish = r.finish_reason
            res.append(Generation(text=r.text, finish_reason=finish, num_tokens=r.num_tokens))
        return res

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        prompts, where = [], []
        for i, req in enumerate(requests):
            try:
                prompts.append(self._prompt(req))
                where.append(i)
            except Exception as e:  # a bad image or placeholder count fails this request only
                results[i] = Generation("", "error", f"{type(e).__name__}: {e}"[:300])
        try:
            for i, g in zip(where, self._run(prompts)):
                results[i] = g
        except Exception:  # isolate the failing request(s): rerun one at a time
            for i, p in zip(where, prompts):
                try:
                    results[i] = self._run([p])[0]
                except Exception as e:  # noqa: BLE001 - counted as a failed generation
                    results[i] = Generation("", "error", f"{type(e).__name__}: {e}"[:300])
        return [r if r is not None else Generation("", "error", "no result") for r in results]


def _image_bytes(im: Any) -> Any:
    """A request image as something a rollout server can be sent (PNG bytes of a PIL image)."""
    if hasattr(im, "save"):
        import io

        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()
    return im


def _count_placeholders(text: str, n_images: int) -> str:
    """Makes the placeholder count match the images: prepend missing ones (lm-eval tasks that do
    not place their images put them first), refuse surplus placeholders."""
    have = text.count("<image>")
    if have == n_images:
        return text
    if have == 0:
        return "<image>" * n_images + "\n" + text
    raise GlmvError(f"the prompt has {have} <image> placeholder(s) but the task gave {n_images} image(s)")


@register_model("glmv")
class GlmvLM(LM):
    """lm-eval model ``glmv``: ``--model glmv --model_args pretrained=DIR,thinking_budget=8192``,
    or construct with ``generator=`` (any :class:`Generator`) from Python."""

    MULTIMODAL = True

    def __init__(self, pretrained: str | None = None, generator: Generator | None = None, batch_size: int = 8,
                 thinking_budget: int | None = ACADEMIC_THINKING_BUDGET, answer_budget: int = ACADEMIC_ANSWER_BUDGET,
                 max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
                 style: str | None = None, device: str | None = None, dtype: str | None = None, seed: int = 0,
                 enable_thinking: bool = True, system: str | None = None, max_batch_size: int | None = None,
                 image_min_pixels: int | None = None, image_max_pixels: int | None = None, **unknown: Any):
        super().__init__()
        if unknown:
            raise GlmvError(f"the glmv model adapter got unknown model_args: {', '.join(sorted(unknown))}; valid: "
                            "pretrained, batch_size, thinking_budget, answer_budget, max_new_tokens, temperature, "
                            "top_p, style, device, dtype, seed, enable_thinking, system, image_min_pixels, image_max_pixels")
        self.settings = GenSettings(thinking_budget=None if thinking_budget in (None, 0, "none") else int(thinking_budget),
                                    answer_budget=int(answer_budget),
                                    max_new_tokens=None if max_new_tokens is None else int(max_new_tokens),
                                    temperature=float(temperature), top_p=float(top_p), seed=int(seed),
                                    enable_thinking=bool(enable_thinking))
        self.settings.validate()
        self.system = system
        self.batch_size = int(batch_size)
        if generator is None:
            if pretrained is None:
                raise GlmvError("the glmv model adapter needs pretrained=DIR (a model directory or preset)")
            generator = load_generator(pretrained, self.settings, batch_size=self.batch_size, device=device,
                                       dtype=dtype, style=style, image_min_pixels=image_min_pixels,
                                       image_max_pixels=image_max_pixels)
        self.generator = generator
        self.model_name = str(pretrained) if pretrained is not None else type(generator).__name__
        self.stats: dict[str, Counter] = defaultdict(Counter)
        self.records: list[dict[str, Any]] = []

    # lm-eval's evaluator reads these for its config block
    def get_model_info(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "thinking_budget": self.settings.thinking_budget,
                "answer_budget": self.settings.answer_budget, "temperature": self.settings.temperature,
                "top_p": self.settings.top_p}

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise GlmvError("the glmv model adapter only runs generative tasks (output_type: generate_until); "
                        "the paper scores every benchmark from generated answers")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise GlmvError("the glmv model adapter does not compute perplexities (loglikelihood_rolling); "
                        "use generative tasks")

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        reqs = []
        for k, inst in enumerate(requests):
            args = inst.args
            context = args[0]
            visual = list(args[2].get("visual") or []) if len(args) > 2 and isinstance(args[2], dict) else []
            task = getattr(inst, "task_name", "") or ""
            rid = f"{task}:{getattr(inst, 'doc_id', k)}"
            try:
                text = _count_placeholders(context, len(visual))
            except GlmvError as e:
                reqs.append((inst, None, str(e)))
                continue
            reqs.append((inst, GenRequest(id=rid, text=text, images=visual, task=task, system=self.system), None))
        todo = [r for _, r, _ in reqs if r is not None]
        outs: list[Generation] = []
        for i in range(0, len(todo), max(1, self.batch_size)):
            outs.extend(self.generator.generate(todo[i:i + self.batch_size]))
        it = iter(outs)
        texts = []
        for inst, req, err in reqs:
            g = Generation("", "error", err) if req is None else next(it)
            task = getattr(inst, "task_name", "") or ""
            self.stats[task]["requests"] += 1
            self.stats[task][g.finish_reason] += 1
            self.records.append({"task": task, "doc_id": getattr(inst, "doc_id", None),
                                 "finish_reason": g.finish_reason, "error": g.error, "num_tokens": g.num_tokens})
            texts.append(g.text)
        return texts


def load_generator(pretrained: str, settings: GenSettings, *, batch_size: int = 8, device: str | None = None,
                   dtype: str | None = None, style: str | None = None, image_min_pixels: int | None = None,
                   image_max_pixels: int | None = None, engine: Any = None) -> HFGenerator:
    """An HFGenerator for a glmv artifact, a Hugging Face GLM-4V directory or a preset; the pixel
    limits (glmv_cli.data.images.ImageSizeConfig) set its image processor's size. ``engine``: the
    stage's ``generation.options.EngineOptions``; with ``--engine server`` only the tokenizer,
    processor and config are loaded (the servers hold the weights)."""
    import torch

    from glmv_cli.data.images import ImageSizeConfig, apply_pixel_limits
    from glmv_cli.modeling import load, load_config, load_processor, model_type

    limits = ImageSizeConfig(None if image_min_pixels is None else int(image_min_pixels),
                             None if image_max_pixels is None else int(image_max_pixels))
    limits.check()
    if engine is not None and engine.engine == "vllm":
        from glmv_cli.generation import VLLMEngine

        processor = load_processor(pretrained)
        size = apply_pixel_limits(processor.image_processor, limits)
        mm = {"mm_processor_kwargs": {"size": size}} if limits.is_set else {}
        served = VLLMEngine(str(pretrained), tokenizer=processor.tokenizer, model_tag="eval", **mm)
        return HFGenerator(None, processor, settings, batch_size=batch_size, style=style, engine=served,
                           model_type=model_type(pretrained))
    if engine is not None and engine.engine == "server":
        from glmv_cli.generation.options import server_engine

        processor = load_processor(pretrained)
        apply_pixel_limits(processor.image_processor, limits)
        config, gen_config = load_config(pretrained, processor)
        served = server_engine(engine, processor.tokenizer, config, gen_config, model_tag="eval")
        return HFGenerator(None, processor, settings, batch_size=batch_size, style=style, engine=served,
                           model_type=model_type(pretrained))
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype in (None, "auto"):
        dtype = "bf16" if str(device).startswith("cuda") else "fp32"
    model, processor = load(pretrained, dtype=dtype, device=device)
    if processor is None:
        raise GlmvError(f"{pretrained}: no tokenizer/processor found; a preset other than 'tiny' needs a checkpoint directory")
    apply_pixel_limits(processor.image_processor, limits)
    return HFGenerator(model, processor, settings, batch_size=batch_size, style=style)
