"""A realistic messy contact CSV for the import benchmark: what marketers actually upload.

Eight countries (US, GB, DE, FR, IN, BR, AU, JP) written the ways people and spreadsheets write them
(``+CC``, national numbers read with the upload's default region or the row's ``country`` column, ``00``
prefixes, dots, dashes, brackets, full-width digits, Excel floats), most rows with both a phone and an
e-mail, some custom columns and quoted names, ~10% junk (empty, invalid phone, invalid e-mail, malformed
rows) and ~5% duplicates (a person seen before, often spelled differently).

Numbers are drawn from prefixes checked valid once with phonenumbers, then given random last digits: cheap
enough for millions of rows and almost always valid. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType

COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "AU", "JP")
_WEIGHTS = (40, 12, 10, 8, 12, 8, 5, 5)
HEADER = ("phone", "email", "first_name", "last_name", "country", "plan", "city", "signup_date", "score")
_FIRST = ("Ann", "Bob", "Chloé", "Dieter", "Émile", "Farah", "Gita", "Hiro", "Ines", "José", "Kai", "Léa")
_LAST = ("Smith", "Müller", "Dubois", "Sharma", "Silva", "Tanaka", "O'Brien", "Nguyen", "García", "Kowalski")
_DOMAINS = ("gmail.com", "yahoo.co.uk", "web.de", "orange.fr", "outlook.com", "icloud.com", "example.org")
_PLANS = ("free", "pro", "team", "enterprise")
_CITIES = ("New York", "London", "Berlin", "Paris", "Mumbai", "São Paulo", "Sydney", "Tokyo")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_TAIL = 5  # random trailing digits on a checked prefix: few accidental duplicates even at 10M rows


@dataclass(frozen=True, slots=True)
class Person:
    country: str
    cc: int
    nsn: str  # national significant number
    email: str
    first: str
    last: str


def _prefixes(region: str, rng: random.Random, count: int = 200) -> list[str]:
    """National significant number prefixes (all but the last digits) that make valid mobile numbers."""
    found: list[str] = []
    for ntype in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
        example = phonenumbers.example_number_for_type(region, ntype)
        if example is None:
            continue
        nsn = phonenumbers.national_significant_number(example)
        attempts = 0
        while len(found) < count * (1 if ntype == PhoneNumberType.MOBILE else 2) and attempts < 8000:
            attempts += 1
            keep = max(2, len(nsn) - _TAIL - 2)
            candidate = nsn[:keep] + "".join(rng.choice("0123456789") for _ in range(len(nsn) - keep))
            if candidate[:-_TAIL] in found:
                continue
            number = phonenumbers.parse("+" + str(example.country_code) + candidate)
            if phonenumbers.is_valid_number(number):
                found.append(candidate[:-_TAIL])
    return found


class Generator:
    def __init__(self, seed: int = 7, default_region: str = "US") -> None:
        self.rng = random.Random(seed)
        self.default_region = default_region
        self.prefixes = {region: _prefixes(region, self.rng) for region in COUNTRIES}
        self.codes = {region: phonenumbers.country_code_for_region(region) for region in COUNTRIES}
        self.people: list[Person] = []  # recent people, for duplicates

    def person(self, index: int) -> Person:
        rng = self.rng
        country = rng.choices(COUNTRIES, _WEIGHTS)[0]
        nsn = rng.choice(self.prefixes[country]) + f"{rng.randrange(10**_TAIL):0{_TAIL}d}"
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}{index}".lower().replace("'", "")
        if rng.random() < 0.1:
            local = local.title()
        return Person(country, self.codes[country], nsn, f"{local}@{rng.choice(_DOMAINS)}", first, last)

    def phone_text(self, p: Person) -> tuple[str, bool]:
        """A spelling of the number, and whether the ``country`` column must say the region to read it."""
        rng, cc, nsn = self.rng, str(p.cc), p.nsn
        pick = rng.random()
        if pick < 0.30:
            return f"+{cc}{nsn}", False
        if pick < 0.42:
            return f"+{cc} {nsn[:3]} {nsn[3:6]} {nsn[6:]}", False
        if pick < 0.50:
            return f"00{cc} {nsn[:3]}-{nsn[3:6]}-{nsn[6:]}", False
        if pick < 0.57:
            return f"+{cc}.{nsn[:3]}.{nsn[3:6]}.{nsn[6:]}", False
        if pick < 0.62:
            return f"+{cc} ({nsn[:3]}) {nsn[3:]}".translate(_FULLWIDTH), False
        if pick < 0.70:
            digits = cc + nsn
            return f"{digits[0]}.{digits[1:]}E{len(digits) - 1}", False  # Excel float of +CC…
        # National spelling: read with the default region, or the row's country column.
        trunk = "" if p.country in ("US", "BR") else "0"
        if p.country == "US":
            text = rng.choice((f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}", f"{nsn[:3]}.{nsn[3:6]}.{nsn[6:]}", nsn))
        else:
            text = f"{trunk}{nsn[:4]} {nsn[4:]}"
        return text, p.country != self.default_region

    def row(self, index: int) -> list[str]:
        rng = self.rng
        junk = rng.random()
        if junk < 0.05 and self.people:  # a duplicate: someone seen before, maybe spelled differently
            p = rng.choice(self.people)
        else:
            p = self.person(index)
            if len(self.people) < 5000:
                self.people.append(p)
            else:
                self.people[rng.randrange(5000)] = p
        phone, needs_country = self.phone_text(p)
        email = p.email
        country = p.country if needs_country or rng.random() < 0.3 else ""
        if 0.05 <= junk < 0.075:
            phone = email = ""  # empty row
        elif 0.075 <= junk < 0.10:
            phone, email = (
                rng.choice(("12345", "+1 555", "n/a", "0000000")),
                "",
            )  # invalid phone, nothing else
        elif 0.10 <= junk < 0.125:
            phone, email = "", rng.choice(("bob@", "no-at-sign", "x@@y.com", "ann@localhost", "a b@c.com"))
        elif 0.125 <= junk < 0.14:
            phone = rng.choice(("", "123"))  # a bad or missing phone next to a good e-mail: kept
        elif 0.14 <= junk < 0.17:
            email = ""  # phone only
        name = p.first if rng.random() < 0.97 else f'"{p.first}, Jr."'
        score = f"{rng.random() * 100:.1f}"
        date = f"20{rng.randrange(15, 26)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        fields = [phone, email, name, p.last, country, rng.choice(_PLANS), rng.choice(_CITIES), date, score]
        if rng.random() < 0.01:
            fields.append("extra")  # malformed: too many fields
        return fields


def write_csv(path: Path, rows: int, seed: int = 7) -> int:
    """Write ``rows`` data rows (plus a header); returns the file size in bytes."""
    gen = Generator(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(HEADER) + "\r\n")
        lines: list[str] = []
        for index in range(rows):
            lines.append(",".join(gen.row(index)))
            if len(lines) >= 10_000:
                out.write("\r\n".join(lines) + "\r\n")
                lines.clear()
        if lines:
            out.write("\r\n".join(lines) + "\r\n")
    return path.stat().st_size
