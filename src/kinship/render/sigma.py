"""Terminal rendering of ``kinship rules sigma``: the rules as YAML, then per rule its
validation counts and the candidates dropped, as YAML comments. Tokens come from the
samples' strings: printed inert (:mod:`kinship.render.safe`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

import click

from kinship.render.safe import plain, plain_lines

if TYPE_CHECKING:  # pySigma loads lazily, with the command
    from kinship.rules.sigma_gen import SigmaResult


def render_sigma(res: SigmaResult, file: TextIO | None = None) -> None:
    """``res``'s rules (multi-document YAML), TP/FP per rule and why each dropped one was."""
    click.echo(plain_lines(res.yaml()), nl=False, file=file)
    for r in res.rules:
        v = r.validation
        if v is not None:
            click.echo(plain(f"# {r.id}: TP {len(v.true_positives)}/{res.n_members} "
                             f"FP {len(v.false_positives)}/{res.n_other_samples}"), file=file)
    for r in res.dropped:
        v = r.validation
        why = (f"FP {len(v.false_positives)}" if v and v.false_positives
               else "; ".join(v.issues) if v and v.issues else "no TP")
        click.echo(plain(f"# dropped {' '.join(r.tokens)!r}: {why}"), file=file)
