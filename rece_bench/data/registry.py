"""Dataset cards: where each dataset comes from, its raw formats, default split and the paper's statistics.

Checksums and sizes are ``None`` until someone downloads the file on a machine with a network and records
them; a download with no recorded checksum is still checked against the length the server announced.
"""

from __future__ import annotations

from dataclasses import dataclass

from rece_bench.errors import UserError

SPLITS = ("temporal", "loo")


@dataclass(frozen=True)
class PaperCounts:
    """The paper's statistics after its filter."""

    users: int
    items: int
    interactions: int

    @property
    def density(self) -> float:
        return self.interactions / (self.users * self.items)


@dataclass(frozen=True)
class DatasetCard:
    name: str
    description: str
    source: str  # a URL, or a short phrase for generated and user data
    raw_formats: tuple[str, ...]  # parse.PARSERS keys; the first is what ``url`` serves
    split: str  # "temporal" or "loo"
    filtered: bool = True  # whether the paper's filter applies by default
    paper: PaperCounts | None = None
    url: str | None = None
    filename: str | None = None  # cache name under <data root>/raw/
    sha256: str | None = None
    size_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"DatasetCard {self.name!r}: split must be one of {SPLITS}, got {self.split!r}")
        if self.url is not None and self.filename is None:
            raise ValueError(f"DatasetCard {self.name!r}: a card with a url needs a filename")

    @property
    def downloadable(self) -> bool:
        return self.url is not None


DATASETS: dict[str, DatasetCard] = {}


def register(card: DatasetCard) -> DatasetCard:
    if card.name in DATASETS:
        raise ValueError(f"dataset {card.name!r} is already registered")
    DATASETS[card.name] = card
    return card


def get_card(name: str) -> DatasetCard:
    """The card of ``name``; an unknown name raises a UserError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UserError(f"unknown dataset {name!r}: choose one of {known}") from None


register(
    DatasetCard(
        name="beeradvocate",
        description="BeerAdvocate reviews (Kaggle beer_reviews.csv or the McAuley dict-literal dump)",
        source="mcauleylab.ucsd.edu/public_datasets/data/beer/beeradvocate.json.gz",
        raw_formats=("beer_dict", "beer_csv"),
        split="temporal",
        paper=PaperCounts(7_606, 22_307, 1_409_494),
        url="https://mcauleylab.ucsd.edu/public_datasets/data/beer/beeradvocate.json.gz",
        filename="beeradvocate.json.gz",
    )
)
register(
    DatasetCard(
        name="behance",
        description="Behance appreciates (user item unix_time)",
        source="mcauleylab.ucsd.edu/public_datasets/gdrive/behance/Behance_appreciate_1M.gz",
        raw_formats=("behance",),
        split="temporal",
        paper=PaperCounts(8_097, 32_434, 546_284),
        url="https://mcauleylab.ucsd.edu/public_datasets/gdrive/behance/Behance_appreciate_1M.gz",
        filename="Behance_appreciate_1M.gz",
    )
)
register(
    DatasetCard(
        name="kindle",
        description="Amazon 2018 Kindle Store ratings (item,user,rating,time) or 5-core JSON lines",
        source="jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/Kindle_Store.csv",
        raw_formats=("amazon_csv_item_first", "amazon_json"),
        split="temporal",
        paper=PaperCounts(23_684, 96_830, 1_256_065),
        url="https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/Kindle_Store.csv",
        filename="Kindle_Store.csv",
    )
)
register(
    DatasetCard(
        name="gowalla",
        description="Gowalla check-ins (user, ISO time, lat, lon, location)",
        source="snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz",
        raw_formats=("gowalla",),
        split="temporal",
        paper=PaperCounts(27_516, 173_511, 2_627_663),
        url="https://snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz",
        filename="loc-gowalla_totalCheckins.txt.gz",
    )
)
register(
    DatasetCard(
        name="beauty",
        description="Amazon 2014 Beauty 5-core (JSON lines, ratings CSV, or the S3-Rec sequence file)",
        source="snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz",
        raw_formats=("amazon_json", "amazon_csv_user_first", "sequence"),
        split="loo",
        filtered=False,
        paper=PaperCounts(22_363, 12_101, 198_502),
        url="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz",
        filename="reviews_Beauty_5.json.gz",
    )
)
register(
    DatasetCard(
        name="synthetic",
        description="Generated walks on an item graph; sizes can copy a paper dataset (--like)",
        source="generated (rece_bench.data.synthetic)",
        raw_formats=(),
        split="temporal",
        filtered=False,
    )
)
register(
    DatasetCard(
        name="custom",
        description="Your own interactions: csv, tsv, parquet or jsonl with user, item and time columns",
        source="a file you pass with --file",
        raw_formats=("csv", "tsv", "parquet", "jsonl"),
        split="temporal",
    )
)
