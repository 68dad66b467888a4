"""The package layout's import direction: model I/O (weights, checkpoint files, the registry,
loading) and the image helpers sit below training and inference, so importing them loads neither."""

import subprocess
import sys

SHARED = (
    "refcolor.images",
    "refcolor.atomic_files",
    "refcolor.models.weights",
    "refcolor.models.checkpoint_file",
    "refcolor.models.loading",
    "refcolor.models.registry",
)


def test_shared_modules_import_neither_training_nor_inference():
    # One fresh interpreter for all of them (each costs a torch import): if any one pulled in
    # training or inference, the list below would not be empty.
    code = (
        f"import sys, {', '.join(SHARED)}; "
        "bad = sorted(m for m in sys.modules if m.startswith(('refcolor.train', 'refcolor.inference'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing {SHARED} loads {result.stdout.strip()} {result.stderr[-500:]}"


def test_public_names_still_resolve():
    import refcolor
    import refcolor.inference
    import refcolor.train

    assert refcolor.Colorizer.__module__ == "refcolor.inference.colorizer"
    assert refcolor.GuidedColorizer.__module__ == "refcolor.inference.guided"
    for name in ("save_weights", "load_weights", "read_config", "load_checkpoint", "atomic_write", "CheckpointManager"):
        assert callable(getattr(refcolor.train, name)), name
    assert callable(refcolor.inference.load_model)
