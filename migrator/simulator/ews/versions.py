"""The Exchange Server builds the simulator can pass for (`EwsSimulator(exchange=...)`).

Each answers with its own ServerVersionInfo header and accepts the RequestServerVersion values
its schema knows. Builds: Microsoft, "Exchange Server build numbers and release dates"
(learn.microsoft.com/exchange/new-features/build-numbers-and-release-dates). The `Version`
attribute: Exchange 2013 CU23 answers "V2_23" (seen in exchangelib issue #758's log);
2016 and 2019 answer "V2017_07_11" (the 2016 CU23 this simulator modelled first; 2019 is
assumed to answer alike: unverified). exchangelib treats both as "keep the version you asked
with" (`Version._is_invalid_version_string`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .soap import T_NS

# RequestServerVersion values in the schema's ExchangeVersionType, oldest first
_EXCHANGE_2013_NAMES = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2009",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2012",
    "Exchange2013",
    "Exchange2013_SP1",
)
_EXCHANGE_2016_NAMES = (
    *_EXCHANGE_2013_NAMES,
    "Exchange2015",
    "Exchange2016",
    "V2015_10_05",
    "V2016_01_06",
    "V2016_04_13",
    "V2016_07_13",
    "V2016_10_10",
)
SCHEMA_NAMES = frozenset(_EXCHANGE_2016_NAMES)


@dataclass(frozen=True)
class ExchangeBuild:
    name: str
    product: str
    build: tuple[int, int, int, int]
    version: str  # the Version attribute of ServerVersionInfo
    accepts: frozenset[str]  # RequestServerVersion values this server answers

    @property
    def header(self) -> str:
        major, minor, major_build, minor_build = self.build
        # attributes first, then the namespace declarations, the types namespace both as h and
        # as the default: as Exchange 2013 writes it (a GetItem answer of 15.0.847.31 in
        # otris/ews-cpp's test assets; a CreateItem answer of a V2_23 server in exchangelib's)
        return (
            f'<h:ServerVersionInfo MajorVersion="{major}" MinorVersion="{minor}" '
            f'MajorBuildNumber="{major_build}" MinorBuildNumber="{minor_build}" '
            f'Version="{self.version}" xmlns:h="{T_NS}" xmlns="{T_NS}" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
        )


EXCHANGE_BUILDS = {
    "2013": ExchangeBuild(
        "2013",
        "Exchange Server 2013 CU23",
        (15, 0, 1497, 2),
        "V2_23",
        frozenset(_EXCHANGE_2013_NAMES),
    ),
    "2016": ExchangeBuild(
        "2016", "Exchange Server 2016 CU23", (15, 1, 2507, 6), "V2017_07_11", SCHEMA_NAMES
    ),
    "2019": ExchangeBuild(
        "2019", "Exchange Server 2019 CU14", (15, 2, 1544, 4), "V2017_07_11", SCHEMA_NAMES
    ),
}
DEFAULT_EXCHANGE = "2016"


def exchange_build(name: str) -> ExchangeBuild:
    try:
        return EXCHANGE_BUILDS[name]
    except KeyError:
        raise ValueError(
            f"unknown Exchange version {name!r}: use one of {', '.join(EXCHANGE_BUILDS)}"
        ) from None
