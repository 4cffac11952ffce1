"""``kinship rules sigma``: Sigma rules for a family from the store's strings.

Wired into the main CLI by ``kinship.cli_sigma.register(main)`` after
``kinship.cli_intel.register(main)`` (it joins the ``rules`` group that one creates).
"""

from __future__ import annotations

from pathlib import Path

import click

from kinship.cli_common import common, family_option, pick_family
from kinship.cli_common import emit as _emit
from kinship.exceptions import NotFoundError
from kinship.render.safe import plain, plain_lines


def sigma_cmd(family: str, out: Path | None, min_share: float | None, db: str | Path | None,
              as_json: bool) -> None:
    """Generate Sigma rules for FAMILY from its stored command lines, registry keys and paths.

    \b
    Each rule is parsed back with pySigma, linted, converted to SQL and run over events
    synthesised from every stored sample's strings: it is kept only when it fires on FAMILY
    and on no other family. That is validation against the corpus's strings, not against
    real endpoint logs.
    Examples:
      kinship rules sigma netsh
      kinship rules sigma netsh --out netsh.yml --json
      kinship rules sigma --family netsh     # same as the first
    """
    from kinship.api import Kinship
    from kinship.rules.sigma_gen import SigmaConfig, generate_family_rules

    cfg = SigmaConfig() if min_share is None else SigmaConfig(min_family_share=min_share)
    with Kinship(db, keep_files=False) as k:
        if not k.store.samples(family=family):
            raise NotFoundError(f"no stored samples of family {family!r}")
        res = generate_family_rules(k.store, family, cfg)
    if not res.rules:
        raise NotFoundError(f"no Sigma rule for {family!r} fires on its samples and none of "
                            f"the others ({len(res.dropped)} dropped)")
    if out is not None:
        out.write_text(res.yaml(), encoding="utf-8")
    if as_json:
        _emit(res.to_dict())
        return
    click.echo(plain_lines(res.yaml()), nl=False)  # strings from samples, inert
    for r in res.rules:
        v = r.validation
        if v is not None:
            click.echo(plain(f"# {r.id}: TP {len(v.true_positives)}/{res.n_members} "
                             f"FP {len(v.false_positives)}/{res.n_other_samples}"))
    for r in res.dropped:
        v = r.validation
        why = (f"FP {len(v.false_positives)}" if v and v.false_positives
               else "; ".join(v.issues) if v and v.issues else "no TP")
        click.echo(plain(f"# dropped {' '.join(r.tokens)!r}: {why}"))


def _sigma_command(family_arg: str | None, family: str | None, out: Path | None,
                   min_share: float | None, db: str | Path | None, as_json: bool) -> None:
    sigma_cmd(pick_family(family_arg, family), out, min_share, db, as_json)


_sigma_command.__doc__ = sigma_cmd.__doc__


def register(main: click.Group) -> None:
    """Add ``sigma`` to ``main``'s ``rules`` group (to ``main`` itself when it has none).

    FAMILY is given as an argument or ``--family`` (as for ``rules yara``)."""
    group = main.commands.get("rules")
    target = group if isinstance(group, click.Group) else main
    target.command("sigma")(
        click.argument("family_arg", metavar="[FAMILY]", required=False)(
            family_option(
                click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                             help="Write the rules here (multi-document YAML).")(
                    click.option("--min-share", type=click.FloatRange(0.0, 1.0),
                                 help="Share of FAMILY's samples that must hold a string "
                                      "(default 0.5).")(common(_sigma_command))))))
