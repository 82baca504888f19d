"""Every configuration file checked before a run writes anything: the source contracts, the
sources config (and the folder it reads), identity, the quality gate and the audiences.

`crm360 check` prints what is wrong; `crm360 run` and the first task of every daily run call
`check_configuration`, so a mistake stops the run with one message naming each file, line and
fix, and nothing is loaded, built or exported.
"""

from __future__ import annotations

from crm360.configfile import ConfigError
from crm360.settings import Settings


def configuration_problems(settings: Settings) -> list[str]:
    """One message per configuration file that is missing or invalid (empty when all are
    fine)."""
    problems = []
    for check in (_contracts, _sources, _identity, _quality, _audiences):
        try:
            check(settings)
        except ConfigError as error:
            problems.append(str(error))
        except ValueError as error:  # the identity and audience loaders' own errors
            problems.append(str(error))
    return problems


def check_configuration(settings: Settings) -> None:
    """Raise one ConfigError listing every configuration problem."""
    problems = configuration_problems(settings)
    if problems:
        raise ConfigError("invalid configuration, nothing was run:\n" + "\n".join(problems))


def _contracts(settings: Settings) -> None:
    from ingestion.contracts import contract_sources, load_contract

    errors = []
    for source in contract_sources():
        try:
            load_contract(source)
        except ConfigError as error:
            errors.append(str(error))
    if errors:
        raise ConfigError("\n".join(errors))


def _sources(settings: Settings) -> None:
    from ingestion.config import load_sources_config
    from ingestion.contracts import load_contract, reads_files

    sources = load_sources_config()
    readers = [n for n, b in sources.items() if b.enabled and reads_files(load_contract(n))]
    if readers and not settings.source_dir.is_dir():
        raise ConfigError(
            f"the source folder {settings.source_dir} does not exist; the sources "
            f"{', '.join(readers)} read files from it (set CRM360_SOURCE_DIR)"
        )


def _identity(settings: Settings) -> None:
    from crm360.identity import load_config

    load_config(settings.identity_config)


def _quality(settings: Settings) -> None:
    from crm360.quality import load_quality_config

    load_quality_config()


def _audiences(settings: Settings) -> None:
    from activation.audiences import load_audiences

    load_audiences()
