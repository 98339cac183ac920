"""Reward functions a user could bring (the tests import them as tests.rewards.userfns.geo:...)."""

import os
import re
import signal
import time


def boxed_exact(prompt, response, reference, domain, extra):
    m = re.search(r"\\boxed\{([^{}]*)\}", response)
    return 1.0 if m and m.group(1).strip() == reference.strip() else 0.0


def half(prompt, response, reference, domain, extra):
    return 0.5 if domain == "geo3k" else 0.25


def chatty(prompt, response, reference, domain, extra):
    print("a print from user code must not break the pool protocol")
    return 1.0


def raises(prompt, response, reference, domain, extra):
    raise KeyError("no such field")


def not_a_number(prompt, response, reference, domain, extra):
    return "1"


def too_much(prompt, response, reference, domain, extra):
    return 7


def slow(prompt, response, reference, domain, extra):
    for _ in range(2000):
        time.sleep(0.01)
    return 1.0


def freeze(prompt, response, reference, domain, extra):
    if "freeze" in response:
        os.kill(os.getpid(), signal.SIGSTOP)  # a worker that stops answering (as if stuck in C code)
    return 1.0


def two_args(prompt, response):
    return 1.0


NOT_CALLABLE = 3


def crash(prompt, response, reference, domain, extra):
    if "crash" in response:
        os._exit(3)  # a worker that dies (as after a segfault in a user's C extension)
    return 1.0
