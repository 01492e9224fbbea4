"""``python -m shopformer``: the `shopformer` command, as ``torchrun -m shopformer`` starts it."""

from shopformer.cli import app

app(prog_name="shopformer")
