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


def bsr_run(fmt, seed):
    """An LPE-BSR ensemble's run name: its number format's name and its seed."""
    return f"bsr-{fmt}-seed{seed}"


def rtn_run(fmt):
    """The rounding-to-nearest member's run name (deterministic: seed 0)."""
    return f"rtn-{fmt}-seed0"


def report_page(page):
    return results(f"report/{page}.html")
