"""``kinship rules``: detection rules generated from the store: ``yara`` (with ``keep``, which
keeps the sample files YARA rules are validated on) and ``sigma``.

The ``rules`` group is defined here once; each subcommand is attached to it below.
FAMILY is given as an argument or ``--family`` (either form, the same family).
"""

from __future__ import annotations

from pathlib import Path

import click

from kinship.cli.common import InputPath, common, emit, family_option, pick_family


@click.group("rules")
def rules() -> None:
    """Detection rules generated from the store (YARA)."""


@rules.command("yara")
@click.argument("family_arg", metavar="[FAMILY]", required=False)
@family_option
@click.option("--samples", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Folder/file holding sample files.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rule here.")
@click.option("--strings-share", type=click.FloatRange(0.0, 1.0),
              help="Share of the rule's strings that must match (default 0.4).")
@common
def yara_cmd(family_arg: str | None, family: str | None, samples: tuple[Path, ...],
             out: Path | None, strings_share: float | None, db: str | Path | None,
             as_json: bool) -> None:
    """Generate and validate a YARA rule for FAMILY from the stored samples' files.

    \b
    The store keeps features only: files come from the store's samples folder (beside an
    SQLite file, the data folder of a PostgreSQL store; see `kinship rules keep`) or from
    --samples folders, matched by SHA-256.
    Examples:
      kinship rules yara netsh --samples ./refs
      kinship rules yara --family netsh --samples ./refs     # the same
      kinship rules yara --family netsh --out netsh.yar --json
    """
    from kinship.api import Kinship
    from kinship.render.intel import render_yara
    from kinship.rules.yara_gen import YaraConfig

    family = pick_family(family_arg, family)
    cfg = YaraConfig() if strings_share is None else YaraConfig(strings_share=strings_share)
    with Kinship(db) as k:
        rule = k.yara_rule(family, sample_dirs=samples, config=cfg)
    v = rule.validation  # every other sample file found was scanned: FP + TN
    n_others = len(v.false_positives) + v.true_negatives if v is not None else 0
    if out is not None:
        out.write_text(rule.text, encoding="utf-8")
    if as_json:
        emit(rule.to_dict())
    else:
        render_yara(rule, n_others)


@rules.command("keep")
@click.argument("files", nargs=-1, required=True, type=InputPath())
@common
def keep_cmd(files: tuple[Path, ...], db: str | Path | None, as_json: bool) -> None:
    """Keep copies of FILES under the store's samples/ folder (for YARA validation).

    \b
    Example:
      kinship rules keep refs/netsh/*.exe
    """
    from kinship.api import store_data_dirs
    from kinship.render.intel import render_kept
    from kinship.store.files import SampleFiles

    store = SampleFiles(store_data_dirs(db)[0])  # the store itself is not opened
    kept = {str(f): store.keep(f) for f in files}
    if as_json:
        emit({"kept": kept, "root": str(store.root)})
    else:
        render_kept(kept)


@rules.command("sigma")
@click.argument("family_arg", metavar="[FAMILY]", required=False)
@family_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rules here (multi-document YAML).")
@click.option("--min-share", type=click.FloatRange(0.0, 1.0),
              help="Share of FAMILY's samples that must hold a string (default 0.5).")
@common
def sigma_cmd(family_arg: str | None, family: str | None, out: Path | None,
              min_share: float | None, db: str | Path | None, as_json: bool) -> None:
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
    from kinship.render.sigma import render_sigma
    from kinship.rules.sigma_gen import SigmaConfig

    family = pick_family(family_arg, family)
    cfg = SigmaConfig() if min_share is None else SigmaConfig(min_family_share=min_share)
    with Kinship(db, keep_files=False) as k:
        res = k.sigma_rules(family, cfg)
    if out is not None:
        out.write_text(res.yaml(), encoding="utf-8")
    if as_json:
        emit(res.to_dict())
    else:
        render_sigma(res)


COMMANDS: tuple[click.Command, ...] = (rules,)
