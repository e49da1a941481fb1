"""Write ``cases.jsonl``: the labelled PII test set of prefline (seeded, reproducible).

    .venv/bin/python tests/data/pii/make.py     # rewrites tests/data/pii/cases.jsonl

Each line is ``{"id", "text", "entities": [{"type", "start", "end"}], "kind"}`` with
character spans ``[start, end)``. ``kind`` is ``positive`` (one or more entities) or
``negative`` (hard negatives: versions, dates, order numbers, arithmetic, hashes, ... and no
entity at all). The sentences are templates written by hand for this project; the values
put into them are generated: valid-checksum card numbers (Luhn) and IBANs (ISO 7064 mod
97), phone numbers in national and international formats of 13 countries (kept only when
the ``phonenumbers`` metadata calls them valid, so the labels are real numbers), IPv4 and
IPv6 addresses (full and compressed), US SSNs in the issued ranges, API keys and tokens,
and internal account ids (``ACC-`` + 8 digits, the custom pattern of the tests).
"""

from __future__ import annotations

import ipaddress
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers

HERE = Path(__file__).parent
SEED = 14

FIRST = ["ana", "bo", "chen", "dara", "emil", "fatima", "goran", "hana", "ivan", "jules", "kofi",
         "lena", "maria", "nils", "olu", "priya", "quinn", "rosa", "sven", "tomoko"]
LAST = ["diaz", "lee", "wang", "okafor", "novak", "schmidt", "rossi", "dubois", "kumar", "silva",
        "murphy", "tanaka", "jensen", "haddad", "kowalski"]
DOMAINS = ["example.com", "mail.co.uk", "uni-hamburg.de", "acme.io", "posteo.net", "gmail.com",
           "outlook.fr", "company.com.au", "startup.dev", "hospital.org", "web.de", "yahoo.es"]


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}",
                        f"{first}+{rng.choice(['news', 'work', 'bills'])}", f"{last}.{first[0]}"])
    return f"{local}@{rng.choice(DOMAINS)}"


# region, national template, international template ('d' = random digit)
PHONES = [
    ("US", "(ddd) ddd-dddd", "+1 ddd ddd dddd"), ("US", "ddd-ddd-dddd", "+1-ddd-ddd-dddd"),
    ("GB", "020 dddd dddd", "+44 20 dddd dddd"), ("GB", "07911 dddddd", "+44 7911 dddddd"),
    ("DE", "030 dddddddd", "+49 30 dddddddd"), ("DE", "0151 dddddddd", "+49 151 dddddddd"),
    ("FR", "01 dd dd dd dd", "+33 1 dd dd dd dd"), ("FR", "06 dd dd dd dd", "+33 6 dd dd dd dd"),
    ("ES", "91d ddd ddd", "+34 91d ddd ddd"), ("IT", "06 dddd dddd", "+39 06 dddd dddd"),
    ("NL", "020 ddd dddd", "+31 20 ddd dddd"), ("IN", "98ddd ddddd", "+91 98ddd ddddd"),
    ("AU", "(02) dddd dddd", "+61 2 dddd dddd"), ("CA", "(416) ddd-dddd", "+1 416 ddd dddd"),
    ("BR", "(11) 9dddd-dddd", "+55 11 9dddd-dddd"), ("JP", None, "+81 3-dddd-dddd"),
    ("CH", None, "+41 44 ddd dd dd"),
]


def _valid_phone(rng: random.Random, region: str, template: str) -> str:
    for _ in range(1000):
        number = "".join(str(rng.randint(0, 9)) if c == "d" else c for c in template)
        if phonenumbers.is_valid_number(phonenumbers.parse(number, region)):
            return number
    raise ValueError(f"no valid {region} number has the form {template}")


def phone(rng: random.Random) -> str:
    region, national, international = rng.choice(PHONES)
    return _valid_phone(rng, region, rng.choice([t for t in (national, international) if t]))


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def credit_card(rng: random.Random) -> str:
    kind = rng.choice(["visa", "visa", "mc", "mc2", "amex", "discover"])
    prefix, length = {"visa": ("4", 16), "mc": (str(rng.randint(51, 55)), 16),
                      "mc2": (str(rng.randint(2221, 2720)), 16), "amex": (rng.choice(["34", "37"]), 15),
                      "discover": ("6011", 16)}[kind]
    digits = luhn_complete(prefix, length, rng)
    sep = rng.choice([" ", "-", ""])
    groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else \
        [digits[i:i + 4] for i in range(0, 16, 4)]
    return sep.join(groups)


IBAN_BBAN = {"DE": "n8n10", "GB": "a4n6n8", "FR": "n5n5c11n2", "ES": "n4n4n2n10", "NL": "a4n10",
             "IT": "a1n5n5c12", "BE": "n3n7n2", "AT": "n5n11", "CH": "n5c12", "PL": "n8n16"}


def _bban(spec: str, rng: random.Random) -> str:
    out, i = "", 0
    while i < len(spec):
        kind = spec[i]
        j = i + 1
        while j < len(spec) and spec[j].isdigit():
            j += 1
        alphabet = {"n": string.digits, "a": string.ascii_uppercase,
                    "c": string.digits + string.ascii_uppercase}[kind]
        out += "".join(rng.choice(alphabet) for _ in range(int(spec[i + 1:j])))
        i = j
    return out


def iban(rng: random.Random) -> str:
    country = rng.choice(list(IBAN_BBAN))
    bban = _bban(IBAN_BBAN[country], rng)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    code = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if rng.random() < 0.6:  # the printed form: groups of four
        return " ".join(code[i:i + 4] for i in range(0, len(code), 4))
    return code


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return str(ipaddress.IPv4Address(rng.randint(0x0B000000, 0xDF000000)))
    groups = [rng.randint(0x2000, 0x3FFF)] + [rng.getrandbits(16) for _ in range(7)]
    if rng.random() < 0.6:  # a run of zero groups, so the compressed form has "::"
        at = rng.randint(2, 5)
        groups[at:at + 3] = [0, 0, 0]
    addr = ipaddress.IPv6Address(int("".join(f"{g:04x}" for g in groups), 16))
    return addr.exploded if rng.random() < 0.3 else addr.compressed


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits

    def run(n: int, alphabet: str = alnum) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    return rng.choice([
        lambda: "sk-proj-" + run(40), lambda: "ghp_" + run(36), lambda: "AKIA" + run(16, string.ascii_uppercase + string.digits),
        lambda: "xoxb-" + run(12, string.digits) + "-" + run(24), lambda: "AIza" + run(35),
        lambda: "sk_live_" + run(24), lambda: "hf_" + run(34), lambda: run(40),
    ])()


def account(rng: random.Random) -> str:
    return f"ACC-{rng.randint(0, 99_999_999):08d}"


def phone_unusual(rng: random.Random) -> str:
    """Formats people write that the main generator does not: a trunk 0 in brackets, the 00
    international prefix, no separators at all, dots."""
    region, template = rng.choice([("GB", "+44 (0)20 dddd dddd"), ("DE", "+49 (0)30 dddddddd"),
                                   ("GB", "0044 20 dddd dddd"), ("DE", "0049 151 dddddddd"),
                                   ("US", "2dd5550ddd"), ("FR", "+336dddddddd"),
                                   ("US", "212.555.dddd"), ("GB", "+4420dddddddd")])
    return _valid_phone(rng, region, template)


def email_unusual(rng: random.Random) -> str:
    """Upper case, sub-domains, digits and hyphens in the domain."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return rng.choice([f"{first.upper()}.{last.upper()}@EXAMPLE.COM",
                       f"{first}@mail.eu.{rng.choice(DOMAINS)}",
                       f"{last}{rng.randint(1, 9)}@my-{first}-shop.com",
                       f"{first}.{last}@sub-{rng.randint(10, 99)}.example.org"])


def ipv4(rng: random.Random) -> str:
    return str(ipaddress.IPv4Address(rng.randint(0x0B000000, 0xDF000000)))


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL_ADDRESS": email, "PHONE_NUMBER": phone, "CREDIT_CARD": credit_card,
    "IBAN_CODE": iban, "IP_ADDRESS": ip, "US_SSN": ssn, "SECRET": secret, "ACCOUNT_ID": account,
    "PHONE_UNUSUAL": phone_unusual, "EMAIL_UNUSUAL": email_unusual, "IPV4": ipv4,
}
ALIASES = {"PHONE_UNUSUAL": "PHONE_NUMBER", "EMAIL_UNUSUAL": "EMAIL_ADDRESS",
           "IPV4": "IP_ADDRESS"}
"""Generators of less common formats and the entity type they label."""

# Hand-written templates; {TYPE} marks where a generated value goes.
TEMPLATES: dict[str, list[str]] = {
    "EMAIL_ADDRESS": [
        "Please send the contract to {EMAIL_ADDRESS} before Friday.",
        "My email is {EMAIL_ADDRESS}, can you confirm you received my order?",
        "cc {EMAIL_ADDRESS} on the reply",
        "Write a polite reminder to {EMAIL_ADDRESS} about the unpaid invoice.",
        "The login {EMAIL_ADDRESS} stopped working after the update.",
        "From: {EMAIL_ADDRESS}\nSubject: refund",
        "Can you fix this regex so it accepts addresses like {EMAIL_ADDRESS}?",
        "You can reach our support lead at <{EMAIL_ADDRESS}>.",
        "Unsubscribe {EMAIL_ADDRESS} from the weekly digest, thanks!",
        "I registered with {EMAIL_ADDRESS}; reset my password please.",
    ],
    "PHONE_NUMBER": [
        "Call me back on {PHONE_NUMBER} after 6pm.",
        "My mobile is {PHONE_NUMBER} if the courier gets lost.",
        "The hotel's number is {PHONE_NUMBER}, could you book a table there?",
        "Text {PHONE_NUMBER} when you arrive.",
        "Is {PHONE_NUMBER} a valid number for a WhatsApp business account?",
        "Reach the night pharmacy at {PHONE_NUMBER}.",
        "Phone: {PHONE_NUMBER}",
        "He left a voicemail from {PHONE_NUMBER} but did not say his name.",
        "Please update my contact number to {PHONE_NUMBER}.",
        "Draft an SMS to {PHONE_NUMBER} saying the meeting moved to Tuesday.",
    ],
    "CREDIT_CARD": [
        "My card {CREDIT_CARD} was charged twice for the same order.",
        "Pay with {CREDIT_CARD}, expiry next year.",
        "Why was the card ending in this number declined: {CREDIT_CARD}?",
        "Card number: {CREDIT_CARD}",
        "I typed {CREDIT_CARD} into the checkout form and it said invalid.",
        "Can you cancel the subscription billed to {CREDIT_CARD}?",
        "Store {CREDIT_CARD} for future payments.",
        "Dispute the charge on {CREDIT_CARD} from the airline.",
    ],
    "IBAN_CODE": [
        "Transfer the deposit to {IBAN_CODE} by the end of the month.",
        "My IBAN is {IBAN_CODE}, please refund it there.",
        "Is {IBAN_CODE} a German or a Dutch account?",
        "Beneficiary account: {IBAN_CODE}",
        "Set up a standing order from {IBAN_CODE} for the rent.",
        "The salary goes to {IBAN_CODE} since March.",
        "Write a letter to the bank closing account {IBAN_CODE}.",
    ],
    "IP_ADDRESS": [
        "The server at {IP_ADDRESS} keeps timing out.",
        "Block {IP_ADDRESS} in the firewall, it is scanning our ports.",
        "My home IP is {IP_ADDRESS}, why can't I reach the VPN?",
        "ssh admin@{IP_ADDRESS} fails with permission denied",
        "Login attempt from {IP_ADDRESS} at 03:12 was not me.",
        "Add {IP_ADDRESS} to the allow list of the database.",
        "ping {IP_ADDRESS} returns 100% packet loss",
        "The logs show requests from {IP_ADDRESS} every second.",
    ],
    "US_SSN": [
        "My social security number is {US_SSN}, do I need it for the form?",
        "SSN: {US_SSN}",
        "Fill in the W-4 with SSN {US_SSN} and my address.",
        "The employer typed my SSN as {US_SSN}, is that a problem?",
        "Social Security no. {US_SSN}",
    ],
    "SECRET": [
        "Here is my API key {SECRET}, why does it return 401?",
        "export OPENAI_API_KEY={SECRET}",
        "token = \"{SECRET}\"",
        "I accidentally committed {SECRET} to a public repo, what now?",
        "Use the credentials {SECRET} to call the endpoint.",
        "Authorization: Bearer {SECRET}",
        "The config has secret_key: {SECRET}",
    ],
    "ACCOUNT_ID": [
        "Customer {ACCOUNT_ID} asked for a refund.",
        "Merge account {ACCOUNT_ID} into the new plan.",
        "Why is {ACCOUNT_ID} flagged for review?",
        "Ticket opened by {ACCOUNT_ID} about slow sync",
    ],
    "UNUSUAL": [
        "Ring the London office on {PHONE_UNUSUAL}.",
        "From abroad dial {PHONE_UNUSUAL} instead.",
        "Forward everything to {EMAIL_UNUSUAL} from now on.",
        "Postgres listens on {IPV4}:5432 but refuses connections.",
        "My number ({PHONE_UNUSUAL}) changed last month.",
        "EMAIL: {EMAIL_UNUSUAL}",
        "Proxy: http://{IPV4}:3128 (no auth)",
        "phone={PHONE_UNUSUAL}&email={EMAIL_UNUSUAL}",
    ],
    "MIXED": [
        "I'm {EMAIL_ADDRESS}, phone {PHONE_NUMBER}; please call rather than write.",
        "Refund to {IBAN_CODE} or to the card {CREDIT_CARD}, whichever is faster.",
        "User {ACCOUNT_ID} logged in from {IP_ADDRESS} with {EMAIL_ADDRESS}.",
        "Contact: {PHONE_NUMBER} / {EMAIL_ADDRESS}",
        "The leaked file had SSN {US_SSN} next to {EMAIL_ADDRESS}.",
        "curl -H 'x-api-key: {SECRET}' --interface {IP_ADDRESS} https://api.example.com/v1",
    ],
}
NEGATIVES = [
    "We upgraded from version 2.10.3 to 3.0.1 last week.",
    "Python 3.11.4 and numpy 1.26.4 are installed.",
    "The meeting is on 2024-05-01 at 10:30.",
    "Deadline: 01/05/2024, 17:00 CET.",
    "Order #A-48213 shipped on 12.03.2024.",
    "Invoice 2024-0042 totals $1,299.99 including VAT.",
    "What is 12 * 34? It is 408.",
    "Compute 3.14159 * 2.5 ^ 2 and round to 2 decimals.",
    "The population grew from 7,900,000,000 to 8,100,000,000.",
    "Set the learning rate to 1e-5 and the batch size to 32.",
    "Section 4.2.1 of ISO 9001 covers documentation.",
    "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed the bug.",
    "The request id was 123e4567-e89b-12d3-a456-426614174000.",
    "HTTP 404 on port 8080 means the route is missing.",
    "chmod 755 deploy.sh && ./deploy.sh --retries 3",
    "The coordinates are 51.5074, -0.1278 (London).",
    "Use the colour #1A2B3C for the header.",
    "Room 1204, building 7, floor 12.",
    "The ZIP code 94103 is in San Francisco.",
    "Train 4521 leaves from platform 9 at 14:05.",
    "ISBN 978-3-16-148410-0 is the second edition.",
    "Our revenue was 4,523,118 euros in Q3 2023.",
    "The matrix is 512 x 768 with 393216 entries.",
    "Run pytest -k test_import -x -q",
    "Unix time 1712345678 is in April 2024.",
    "The answer is 42, and 42 * 2 = 84.",
    "Fibonacci: 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89.",
    "The flight LH 2024 departs at 06:45 from gate B12.",
    "Temperature dropped from 21.5 to 18.25 degrees.",
    "Product code SKU-000123-XL is out of stock.",
    "Case number 2023-CV-004512 was dismissed.",
    "Add 0.1 and 0.2 in floating point: 0.30000000000000004.",
    "The bug appears in builds 1402 through 1417.",
    "Use std::vector<int> and std::map<std::string, int> here.",
    "The checksum is 0x1F3A and the offset 0x0040.",
    "Pi to ten digits is 3.1415926535.",
    "The tracking number is 1Z999AA10123456784.",
    "Serial number SN-88213-44 is under warranty until 2026.",
    "The recipe needs 250 g flour, 2 eggs and 125 ml milk.",
    "Lines 120-180 of main.py handle retries.",
    "A 4K screen has 3840 x 2160 = 8294400 pixels.",
    "Our office is open 9-17, Monday to Friday.",
    "Kubernetes 1.29.2 dropped support for that API.",
    "The score went from 87.5% to 91.25% after tuning.",
    "Prime numbers below 30: 2 3 5 7 11 13 17 19 23 29.",
    "Apollo 11 landed on 20 July 1969 at 20:17 UTC.",
    "Model checkpoint step 12000, loss 0.3412.",
    "Table 3 shows p < 0.001 for all 12 comparisons.",
    "Use the SHA-256 digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.",
    "The year 2038 problem affects 32-bit timestamps.",
    "Paragraph 2(b)(iii) of the agreement applies.",
    "Ticket JIRA-4821 blocks release 5.2.",
    "The lottery numbers were 4 8 15 16 23 42.",
    "Build 20240501.3 passed all 1532 tests.",
    "A 1/4 inch bolt with a 20 TPI thread.",
    "The IPv4 header is 20 bytes; the IPv6 header is 40 bytes.",
    "Write a function that validates email addresses and phone numbers.",
    "What does the error 'invalid IBAN checksum' mean?",
    "Explain how credit card numbers use the Luhn algorithm.",
    "How many digits does a US social security number have?",
]


def _fill(template: str, rng: random.Random) -> tuple[str, list[dict[str, object]]]:
    text, entities, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        kind, _, rest = after.partition("}")
        value = GENERATORS[kind](rng)
        text += before
        entities.append({"type": ALIASES.get(kind, kind), "start": len(text),
                         "end": len(text) + len(value)})
        text += value
    return text + rest, entities


# How many sentences per template group (each filled with fresh values).
PER_GROUP = {"EMAIL_ADDRESS": 30, "PHONE_NUMBER": 50, "CREDIT_CARD": 24, "IBAN_CODE": 24,
             "IP_ADDRESS": 24, "US_SSN": 10, "SECRET": 16, "ACCOUNT_ID": 8, "UNUSUAL": 32,
             "MIXED": 24}


def cases(seed: int = SEED) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for group, n in PER_GROUP.items():
        templates = TEMPLATES[group]
        for i in range(n):
            text, entities = _fill(templates[i % len(templates)], rng)
            out.append({"text": text, "entities": entities, "kind": "positive"})
    out += [{"text": t, "entities": [], "kind": "negative"} for t in NEGATIVES]
    return [{"id": i, **c} for i, c in enumerate(out)]


def main() -> None:
    rows = cases()
    with (HERE / "cases.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} cases to {HERE / 'cases.jsonl'}")


if __name__ == "__main__":
    main()
