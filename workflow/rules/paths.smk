# Where each kind of file lives, in one place: every rule file builds its paths with these.


def work(path):
    return f"work/{PROFILE}/{path}"


def results(path):
    return f"results/{PROFILE}/{path}"


def figures(path):
    return f"figures/{PROFILE}/{path}"


def checkpoint_file(model):
    return work(f"checkpoints/{model}.safetensors")


def posterior_file(model):
    return work(f"posteriors/{model}.safetensors")


def preds_file(model, run):
    return work(f"preds/{model}/{run}.npz")


def members_dir(model, run):
    return work(f"members/{model}/{run}")


def tables(name):
    return [results(f"tables/{name}.{ext}") for ext in ("csv", "md", "tex")]


def figure_files(name):
    return [figures(f"{name}.{ext}") for ext in ("png", "pdf")]


def run_name(method, seed, fmt=None):
    """A run's name as every rule file writes it, ``<method>[-<format>]-seed<seed>``
    (``bsr-int5-seed0``, ``bma-seed1``, ``gaussian-noise-seed2``; wildcards work as values).
    """
    return "-".join([method, *([fmt] if fmt else []), f"seed{seed}"])


def bsr_run(fmt, seed):
    """An LPE-BSR ensemble's run name: its number format's name and its seed."""
    return run_name("bsr", seed, fmt)


def rtn_run(fmt):
    """The rounding-to-nearest member's run name (deterministic: seed 0)."""
    return run_name("rtn", 0, fmt)


def landscape_file(source, fmt, seed):
    """A plane of ``source`` (a fine-tuned model, ``fast-sse``) through its LPE-BSR member of
    ``fmt`` and ``seed``."""
    return work(f"landscape/{source}-{run_name(fmt, seed)}.npz")


def report_page(page):
    return results(f"report/{page}.html")
