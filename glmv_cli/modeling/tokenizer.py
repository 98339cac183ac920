"""The offline tokenizer: a small byte-level BPE with the GLM special tokens.

Real runs use a checkpoint's own tokenizer (151k entries). Without one (tests, the CPU demo,
a model assembled from scratch) glmv builds this tokenizer in-process instead of downloading:

- byte-level BPE (the GLM-4 / GPT-2 family of pre-tokenisers, so every string round-trips,
  Chinese included) trained with ``tokenizers`` on the corpus embedded below — English prose,
  the task vocabulary of the synthetic domains, LaTeX and math symbols, JSON punctuation and a
  few hundred common Chinese characters;
- digits are split one per token before BPE (``Digits(individual_digits=True)``): the math and
  counting tasks compare numbers digit by digit, and a 2k vocabulary cannot hold number chunks
  consistently anyway; CJK characters are isolated too, so a Chinese character is one token
  (or its bytes) rather than part of a sentence-long merge;
- the GLM special tokens follow the BPE vocabulary, each one a single token, in GLM's order.

Trade-offs: training takes ~0.05 s and its result is byte-identical run to run (BPE merges are
ranked by count, ties broken by the byte pairs, and the corpus is fixed), so the tokenizer is
rebuilt rather than shipped as a 100 kB JSON blob; the module caches it per process. A 2k
vocabulary makes English ~2.5x longer in tokens than GLM's, which is irrelevant for a few-M
parameter demo model. ``pad`` = ``eos`` = ``<|endoftext|>`` as in GLM's own tokenizer config;
generation also stops on ``<|user|>`` and ``<|observation|>`` (GLM's generation_config).
"""

from __future__ import annotations

import copy
import threading

# GLM's special tokens in the order of GLM-4's tokenizer (ids 151329… there, BPE size… here).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<|begin_of_box|>",
    "<|end_of_box|>",
    "/nothink",
)

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|endoftext|>"
# Tokens that end an assistant turn during generation (GLM generation_config.eos_token_id).
STOP_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|user|>", "<|observation|>")

BPE_VOCAB_SIZE = 2048 - len(SPECIAL_TOKENS)  # the full vocabulary is then exactly 2048

_ENGLISH = """
The quick brown fox jumps over the lazy dog. A picture is worth a thousand words.
Look at the image and answer the question. What is shown in the picture? How many objects
are there in the image? Count the red circles, the blue squares and the green triangles.
There are several shapes on a white background. The chart shows the sales of each year.
Which category has the highest value? What is the value for the year? Read the text in the
image and write it down exactly. Find the bounding box of the object in the image. Click the
button that says submit. Type the word into the search box. Open the settings menu.
The answer is the number of items. Let me think step by step. First, we need to find the
total. Then we compute the difference between the two values. Therefore the result is
correct. So the final answer is. We know that the area of the triangle is half of the base
times the height. The circle has a radius and a diameter. The square has four equal sides.
The rectangle has a width and a height. Solve the equation for x. Simplify the expression.
Compute the sum, the product, the ratio and the percentage. The probability of the event is.
The function f of x is increasing. The angle between the two lines is ninety degrees.
The speed of the car is measured in meters per second. The mass of the object is given.
This is a question about physics, chemistry, biology and geography. The document contains
a table with rows and columns. The left column lists the names and the right column lists
the prices. The title of the chart is at the top. The legend is on the right side.
The x axis shows the month and the y axis shows the temperature. The bar for March is the
tallest. The line goes up and then goes down. The pie chart is divided into slices.
Yes or no? True or false? Choose the correct option: A, B, C or D. The correct option is.
The user asks a question and the assistant answers it. You are a helpful assistant.
Describe the scene in detail. A man is riding a bicycle on the street. A woman is reading a
book in the park. Two cats are sleeping on the sofa. The sky is blue and the grass is green.
There is a small house near the river, and the trees are tall. The screen shows a web page
with a login form, a username field, a password field and a sign in button.
Please reason about the problem and put the final answer in a box. The box contains the
answer only. Wait, let me check this again. Actually, that is not right. Hmm, so we get.
In summary, the answer should be. Note that the values are rounded to two decimal places.
The image is a photograph of a city at night. The text says hello world in large letters.
The caption of the figure reads. The page number is at the bottom of the document.
Where is the cat? What color is the car? Who is holding the umbrella? When was it built?
Why is the man running? How far is the station from the school? Is the door open or closed?
one two three four five six seven eight nine ten eleven twelve hundred thousand million
first second third last next previous left right top bottom center middle above below
red orange yellow green blue purple black white gray brown pink circle square triangle
star hexagon pentagon line point arrow dot cube sphere cylinder cone
apple banana orange grape car bus truck bicycle person dog cat bird horse cow sheep
monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december spring summer autumn winter
"""

_MATH = r"""
1 + 1 = 2, 2 + 3 = 5, 12 - 7 = 5, 6 * 7 = 42, 144 / 12 = 12, 3.14159, 2.71828, 0.5, -3, 1e-5
x^2 + y^2 = z^2, a^2 - b^2 = (a - b)(a + b), (x + 1)^2 = x^2 + 2x + 1, f(x) = 3x + 2
\frac{1}{2} \frac{3}{4} \frac{a}{b} \sqrt{2} \sqrt{x} \sqrt[3]{27} \pi \theta \alpha \beta
\gamma \delta \lambda \mu \sigma \omega \infty \cdot \times \div \pm \leq \geq \neq \approx
\sum_{i=1}^{n} i = \frac{n(n+1)}{2} \int_0^1 x \, dx = \frac{1}{2} \lim_{x \to 0} \log \ln
\sin \cos \tan \left( \right) \left[ \right] \{ \} \boxed{42} \text{cm} \text{m} \mathrm{kg}
$x = 5$ $$y = 2x$$ \( a \) \[ b \] 45^\circ 90^\circ 180^\circ 360^\circ 50\% 25\% 100\%
< > <= >= == != + - * / % ^ = ( ) [ ] { } | & ~ ! ? : ; , . ' " ` _ # @ $ \ ->
area = length * width, perimeter = 2 * (length + width), volume = base * height
mean = 7.5, median = 8, mode = 3, variance = 2.25, ratio 3:4, 1/3 + 1/6 = 1/2, 0.25 = 1/4
"""

_JSON = """
{"action": "click", "box_2d": [[120, 340, 560, 410]]}
{"action": "type", "box_2d": [[100, 200, 300, 400]], "text": "hello"}
{"action": "scroll", "direction": "down"} {"id": "sample-0001", "answer": "12", "domain": "stem"}
{"role": "user", "content": "<image> What is this?"} {"role": "assistant", "content": "A cat."}
[x1, y1, x2, y2] [10, 20, 30, 40] [0, 0, 1000, 1000] {"key": "value", "list": [1, 2, 3], "ok": true,
"none": null, "flag": false} {"type": "text", "text": "hi"} {"type": "image"}
<think> </think> <answer> </answer> a, b, c; d: e. "quoted" 'single' (paren) [bracket]
"""

_CHINESE = """
图片中有几个物体？请看图回答问题。这张图显示了什么？答案是五。我们先计算总数，然后求差。
所以最终答案是。这是一道数学题，请一步一步地思考。三角形的面积等于底乘以高的一半。
图表显示了每年的销售额。哪个类别的数值最高？请读出图片中的文字。点击提交按钮。
你好，世界。今天天气很好。一个人在街上骑自行车。两只猫在沙发上睡觉。天空是蓝色的。
一二三四五六七八九十百千万亿零上下左右中大小多少是不有的了在和人这个们来到时地为子
中国北京上海学生老师学校问题答案计算方程函数面积体积长度宽度高度速度时间数量颜色红
黄蓝绿黑白圆形正方形长方形三角形点线角度直线平行垂直概率统计平均数最大最小正确错误
"""

CORPUS: tuple[str, ...] = tuple(
    line.strip() for block in (_ENGLISH, _MATH, _JSON, _CHINESE) for line in block.splitlines() if line.strip()
)

# One pre-token per CJK character (ideographs, CJK punctuation, full-width forms): Chinese has
# no spaces, so without this a whole repeated sentence would become a single BPE token.
_CJK = "[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"

_lock = threading.Lock()
_cached = None


def _train_backend():
    """Trains the byte-level BPE (a ``tokenizers.Tokenizer``) on the embedded corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Split(Regex(_CJK), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # Each line also appears lower-cased, title-cased and with a leading space, so that frequent
    # words win merges over one-off character pairs and the BPE part reaches its target size.
    lines = [v for ln in CORPUS for v in (ln, ln.lower(), ln.title(), " " + ln)]
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def _build():
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    backend = _train_backend()
    # Pad the BPE part to exactly BPE_VOCAB_SIZE with inert filler tokens if the corpus ran
    # out of merges, so the vocabulary size (and with it the tiny model) never drifts.
    size = backend.get_vocab_size()
    if size < BPE_VOCAB_SIZE:
        backend.add_tokens([AddedToken(f"<|reserved_{i}|>", special=True) for i in range(BPE_VOCAB_SIZE - size)])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    from glmv_cli.data.chat import chat_template

    tok.chat_template = chat_template("glm41v")
    return tok


def offline_tokenizer(style: str = "glm41v"):
    """The offline GLM tokenizer (a fresh copy; built once per process, ~0.1 s).

    ``style`` picks the chat template saved with it: ``glm41v`` or ``glm45v``.
    """
    global _cached
    with _lock:
        if _cached is None:
            _cached = _build()
        tok = copy.deepcopy(_cached)
    if style != "glm41v":
        from glmv_cli.data.chat import chat_template

        tok.chat_template = chat_template(style)
    return tok


def special_token_ids(tokenizer) -> dict[str, int]:
    """Maps every GLM special token present in ``tokenizer`` to its id."""
    out = {}
    for t in SPECIAL_TOKENS:
        i = tokenizer.convert_tokens_to_ids(t)
        if i is not None and i != tokenizer.unk_token_id:
            out[t] = int(i)
    return out


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn: ``<|endoftext|>``, ``<|user|>``, ``<|observation|>``."""
    ids = special_token_ids(tokenizer)
    return [ids[t] for t in STOP_TOKENS if t in ids]
