"""Python's cyclic garbage collector, paused while one bounded piece of sync work runs.

Applying a reply part of 10,000 entries allocates hundreds of thousands of containers (the
decoded entries and their attributes, the rows written, the import history), nearly none of
them in a reference cycle: reference counting frees them as soon as they are dropped. The
cyclic collector, started every 700 allocations, walks them again and again while they are
alive: 7–8 % of a full sync's CPU (W1 3 × 10,000, measured with perf; docs/scaling.md). It is
paused while a message is processed or a cycle runs, and resumes when that ends, normally or
not; whatever cycles the work left are collected then, at the collector's next run.

Process-wide, as the collector is: a thread that finds it paused already (by another thread,
or by the caller) leaves it as it is.
"""

import gc
from contextlib import contextmanager


@contextmanager
def collector_paused():
    """Usable as a decorator too."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
