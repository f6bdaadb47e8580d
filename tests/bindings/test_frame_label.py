"""How the reports show a Python function's file (mem_profiler.core.frame_label): by its
name, a package's __init__.py with its folder, and a name that several of a profile's
files share with as many folders as tell them apart. PyTorch has five functional.py
and four conv.py: shown by their names alone, its `-t` of `import torch` listed
`<module> (functional.py)` five times over, each a different file."""

from __future__ import annotations

from mem_profiler.core.frame_label import frame_label, shown_files

TORCH = "/venv/site-packages/torch"


def test_a_name_several_files_share_is_shown_with_the_folders_that_tell_them_apart():
    files = [
        f"{TORCH}/functional.py",
        f"{TORCH}/nn/functional.py",
        f"{TORCH}/_refs/nn/functional.py",
        f"{TORCH}/optim/__init__.py",
        f"{TORCH}/cuda/__init__.py",
        f"{TORCH}/nn/modules/conv.py",
        "/home/me/train.py",
        "/home/me/old/functional_tests.py",
        "<frozen importlib._bootstrap>",
    ]
    assert shown_files(files) == {
        f"{TORCH}/functional.py": "torch/functional.py",
        f"{TORCH}/nn/functional.py": "torch/nn/functional.py",
        f"{TORCH}/_refs/nn/functional.py": "_refs/nn/functional.py",
        f"{TORCH}/optim/__init__.py": "optim/__init__.py",
        f"{TORCH}/cuda/__init__.py": "cuda/__init__.py",
        f"{TORCH}/nn/modules/conv.py": "conv.py",
        "/home/me/train.py": "train.py",
        "/home/me/old/functional_tests.py": "functional_tests.py",
        "<frozen importlib._bootstrap>": "<frozen importlib._bootstrap>",
    }


def test_a_file_whose_whole_path_is_anothers_tail():
    files = ["/x/util.py", "/srv/x/util.py", "util.py"]
    assert shown_files(files) == {
        "/x/util.py": "/x/util.py",
        "/srv/x/util.py": "srv/x/util.py",
        "util.py": "util.py",
    }


def test_labels():
    assert frame_label("Adam.step", ("/t/adam.py", 12), True, "adam.py") == (
        "Adam.step (adam.py:12)"
    )
    assert frame_label("Adam.step", ("/t/adam.py", 12), False, "adam.py") == "Adam.step (adam.py)"
    assert frame_label("grow", ("/src/grow.c", 31), True) == "grow /src/grow.c:31"
    assert frame_label("grow", None, True) == "grow"
