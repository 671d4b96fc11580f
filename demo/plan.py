"""The demo directories: three organizations' people, lists and contacts, the same on every run.

`plan_recipients()` is pure (a fixed random seed, fixed name lists), so seeding twice plans the
same recipients and the seed command only has to add the ones that are missing.
"""

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta

from directory.constants import Kind, Role

SEED = 198789
RECIPIENTS, CONTRACTORS, IMPORTED = "Recipients", "Contractors", "InterOrg Contacts"
CONTAINERS = (RECIPIENTS, CONTRACTORS, IMPORTED)


@dataclass(frozen=True)
class City:
    code: str
    name: str
    state: str
    postal_code: str
    country: str
    address: str
    phone: str  # a format with {n}: the person's number within the organization


@dataclass(frozen=True)
class OrgSpec:
    number: int
    display_name: str
    role: str
    cities: tuple[City, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    staff: int
    contractor_mailboxes: int
    partners: tuple[tuple[str, str], ...]  # (agency, mail domain) of its custom recipients
    partner_contacts: int
    append_display_name: str = ""
    modify_smtp_domain: str = ""
    export_contractors: bool = False

    @property
    def name(self) -> str:
        return f"ORG{self.number}"

    @property
    def site(self) -> str:
        return f"Site{self.number}"

    @property
    def domain(self) -> str:
        return f"org{self.number}.example"


@dataclass
class Planned:
    """One recipient to create: its container's name, its fields and, for a list, its members."""

    container: str
    fields: dict
    members: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str:
        return self.fields["alias"]


# Department, cost centre, and the titles of its people (the first is its head's).
DEPARTMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Sales": ("4100", ("Sales Director", "Account Executive", "Sales Representative",
                       "Regional Sales Manager", "Inside Sales Associate")),
    "Marketing": ("4200", ("Marketing Director", "Marketing Specialist",
                           "Product Marketing Manager", "Content Strategist")),
    "Finance": ("1100", ("Chief Financial Officer", "Accountant", "Financial Analyst",
                         "Controller", "Payroll Specialist")),
    "Human Resources": ("1200", ("HR Director", "HR Generalist", "Recruiter",
                                 "HR Business Partner")),
    "Engineering": ("3100", ("VP Engineering", "Software Engineer", "Senior Software Engineer",
                             "QA Engineer", "Engineering Manager")),
    "IT Operations": ("1300", ("IT Director", "Systems Administrator", "Messaging Administrator",
                               "Help Desk Technician", "Network Engineer")),
    "Legal": ("1400", ("General Counsel", "Corporate Counsel", "Paralegal")),
    "Customer Service": ("4300", ("Customer Service Manager", "Customer Service Representative",
                                  "Support Team Lead")),
    "Logistics": ("5100", ("Head of Logistics", "Logistics Coordinator", "Warehouse Supervisor",
                           "Buyer")),
}  # fmt: skip
DEPARTMENT_WEIGHTS = (22, 8, 9, 5, 24, 10, 3, 12, 7)

ORGANIZATIONS = (
    OrgSpec(
        number=1,
        display_name="Contoso Holding",
        role=Role.BOTH,
        cities=(
            City("SEA", "Seattle", "WA", "98101", "United States", "1200 Fifth Avenue",
                 "+1 206 555 0100 ext. {n}"),
            City("RED", "Redmond", "WA", "98052", "United States", "15010 NE 36th Street",
                 "+1 425 555 0150 ext. {n}"),
            City("BEL", "Bellevue", "WA", "98004", "United States", "500 108th Avenue NE",
                 "+1 425 555 0180 ext. {n}"),
        ),
        first_names=("James", "Mary", "Robert", "Patricia", "Michael", "Jennifer", "David",
                     "Linda", "William", "Elizabeth", "Richard", "Barbara", "Joseph", "Susan",
                     "Thomas", "Jessica", "Christopher", "Sarah", "Daniel", "Karen", "Matthew",
                     "Nancy", "Anthony", "Lisa", "Mark", "Ashley", "Kevin", "Emily", "Brian",
                     "Donna", "Priya", "Wei", "Carlos", "Aisha", "Hiroshi", "Sofia", "Mohammed",
                     "Olga", "José", "Zoë"),
        last_names=("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
                    "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson",
                    "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez",
                    "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis",
                    "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Nguyen", "Patel",
                    "Kim", "Chen", "O'Brien", "Okafor", "Novak", "Rossi"),
        staff=215,
        contractor_mailboxes=12,
        partners=(("Adatum Staffing", "adatum.example"), ("Litware Inc.", "litware.example")),
        partner_contacts=20,
    ),
    OrgSpec(
        number=2,
        display_name="Fabrikam",
        role=Role.REQUESTOR,
        cities=(
            City("MUC", "München", "Bayern", "80807", "Germany", "Leopoldstraße 244",
                 "+49 89 3201 {n}"),
            City("BER", "Berlin", "Berlin", "10117", "Germany", "Friedrichstraße 68",
                 "+49 30 2045 {n}"),
            City("HAM", "Hamburg", "Hamburg", "20095", "Germany", "Mönckebergstraße 7",
                 "+49 40 3302 {n}"),
        ),
        first_names=("Lukas", "Anna", "Leon", "Lena", "Felix", "Marie", "Jonas", "Sophie",
                     "Paul", "Laura", "Maximilian", "Julia", "Tim", "Lea", "Jan", "Hannah",
                     "Niklas", "Katharina", "Tobias", "Sarah", "Sebastian", "Johanna", "Florian",
                     "Miriam", "Stefan", "Sabine", "Thomas", "Claudia", "Andreas", "Petra",
                     "Jürgen", "Jörg", "Bärbel", "Matthias", "Ayşe", "Mehmet", "Dominik",
                     "Franziska", "Kai", "Ines"),
        last_names=("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner",
                    "Becker", "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter",
                    "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun",
                    "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Krause",
                    "Meier", "Lehmann", "Schulze", "Maier", "Köhler", "Herrmann", "König",
                    "Walter", "Huber", "Kaiser", "Yılmaz", "Kowalski"),
        staff=190,
        contractor_mailboxes=10,
        partners=(("Tailspin Toys", "tailspintoys.example"),
                  ("Wingtip Toys", "wingtiptoys.example")),
        partner_contacts=18,
        append_display_name=" (Fabrikam)",
        modify_smtp_domain="fabrikam.example",
    ),
    OrgSpec(
        number=3,
        display_name="Northwind Traders",
        role=Role.REQUESTOR,
        # Ofcom keeps 020 7946 0xxx, 0161 496 0xxx and 0131 496 0xxx for fiction.
        cities=(
            City("LON", "London", "Greater London", "EC2A 2EW", "United Kingdom",
                 "20 Worship Street", "+44 20 7946 0{n:03d}"),
            City("MAN", "Manchester", "Greater Manchester", "M1 3BE", "United Kingdom",
                 "1 Piccadilly Gardens", "+44 161 496 0{n:03d}"),
            City("EDI", "Edinburgh", "City of Edinburgh", "EH2 2AD", "United Kingdom",
                 "5 Princes Street", "+44 131 496 0{n:03d}"),
        ),
        first_names=("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Olivia",
                     "Charlie", "Emily", "Thomas", "Poppy", "Oscar", "Isabella", "William",
                     "Jessica", "James", "Sophie", "Henry", "Grace", "Alfie", "Freya", "Arthur",
                     "Evie", "Callum", "Niamh", "Rhys", "Siobhan", "Ewan", "Morag", "Rajesh",
                     "Anjali", "Tariq", "Fatima", "Declan", "Aoife", "Eilidh", "Gareth", "Bethan",
                     "Fraser"),
        last_names=("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson",
                    "Davies", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White",
                    "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke", "Patel", "Khan",
                    "Lewis", "Phillips", "Mason", "Mitchell", "Campbell", "MacDonald",
                    "Stewart", "Murray", "Hughes", "Morgan", "Griffiths", "O'Neill", "Kaur",
                    "Begum", "Ahmed", "Ali"),
        staff=165,
        contractor_mailboxes=15,
        partners=(("Proseware", "proseware.example"),
                  ("Wide World Importers", "wideworldimporters.example")),
        partner_contacts=25,
        append_display_name=" (Northwind)",
        export_contractors=True,
    ),
)  # fmt: skip

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "o", "ł": "l", "ı": "i"})


def ascii_name(text: str) -> str:
    """A name as the local part of an address: lowercase ASCII letters only."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    return "".join(c for c in decomposed if c.isascii() and c.isalpha())


def trust_level(rng: random.Random) -> int:
    """Most recipients 0; some restricted (10-60); a few never to be exported (90+)."""
    roll = rng.random()
    if roll < 0.8:
        return 0
    if roll < 0.95:
        return rng.choice((10, 20, 30, 40, 50, 60))
    return rng.choice((90, 95, 100))


def plan_recipients(spec: OrgSpec) -> list[Planned]:
    """Every recipient of one demo organization, in creation order."""
    return _Planner(spec).plan()


class _Planner:
    """Draws one organization's recipients from its own random generator, in a fixed order."""

    def __init__(self, spec: OrgSpec) -> None:
        self.spec = spec
        self.rng = random.Random(SEED + spec.number)
        self.aliases: set[str] = set()
        self.addresses: set[str] = set()

    def plan(self) -> list[Planned]:
        spec = self.spec
        people = self.people(spec.staff + spec.contractor_mailboxes + spec.partner_contacts)
        contractors_end = spec.staff + spec.contractor_mailboxes
        staff = [self.staff_member(n, *person) for n, person in enumerate(people[: spec.staff])]
        contractors = [
            self.contractor(n, *person)
            for n, person in enumerate(people[spec.staff : contractors_end], start=spec.staff)
        ]
        partners = [self.partner_contact(*person) for person in people[contractors_end:]]
        self.give_heads_assistants(staff)
        return staff + contractors + partners + self.lists(staff)

    def people(self, count: int) -> list[tuple[str, str]]:
        """`count` different (first name, last name) pairs."""
        first_names, last_names = self.spec.first_names, self.spec.last_names
        picks = self.rng.sample(range(len(first_names) * len(last_names)), count)
        return [(first_names[p // len(last_names)], last_names[p % len(last_names)]) for p in picks]

    @staticmethod
    def unique(taken: set[str], base: str) -> str:
        """`base`, or `base2`, `base3`... for the second John Smith."""
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}{n}"
        taken.add(candidate)
        return candidate

    def person(self, n: int, first: str, last: str) -> dict:
        rng, spec = self.rng, self.spec
        city = spec.cities[0] if rng.random() < 0.6 else rng.choice(spec.cities[1:])
        initials = rng.choice("ABCDEFGHJKLMNPRSTW") if rng.random() < 0.12 else ""
        local = self.unique(self.addresses, f"{ascii_name(first)}.{ascii_name(last)}")
        hired = date(2004, 1, 5) + timedelta(days=rng.randrange(20 * 365))
        return {
            "kind": Kind.MAILBOX,
            "first_name": first,
            "initials": initials,
            "last_name": last,
            "display_name": f"{first} {initials + '. ' if initials else ''}{last}",
            "alias": self.unique(self.aliases, ascii_name(first)[:1] + ascii_name(last)),
            "primary_smtp": f"{local}@{spec.domain}",
            "office": f"{city.code}-{rng.randint(1, 6)}.{rng.randint(1, 40):02d}",
            "phone": city.phone.format(n=n + 100),
            "address": city.address,
            "city": city.name,
            "state": city.state,
            "postal_code": city.postal_code,
            "country": city.country,
            "trust_level": trust_level(rng),
            "custom_attribute_1": f"E{spec.number}{n + 1:05d}",
            "custom_attribute_4": hired.isoformat(),
        }

    def staff_member(self, n: int, first: str, last: str) -> Planned:
        departments = list(DEPARTMENTS)
        head = n < len(departments)  # the first person of each department heads it
        if head:
            department = departments[n]
        else:
            department = self.rng.choices(departments, DEPARTMENT_WEIGHTS)[0]
        cost_centre, titles = DEPARTMENTS[department]
        fields = self.person(n, first, last)
        fields.update(
            title=titles[0] if head else self.rng.choice(titles[1:]),
            department=department,
            company=self.spec.display_name,
            custom_attribute_2=f"CC-{cost_centre}",
            custom_attribute_3=self.rng.choice(("Permanent",) * 9 + ("Part-time",)),
        )
        return Planned(RECIPIENTS, fields)

    def contractor(self, n: int, first: str, last: str) -> Planned:
        agency, _domain = self.rng.choice(self.spec.partners)
        department = self.rng.choice(list(DEPARTMENTS))
        cost_centre, titles = DEPARTMENTS[department]
        fields = self.person(n, first, last)
        fields.update(
            title=f"Contract {self.rng.choice(titles[1:])}",
            department=department,
            company=agency,
            trust_level=self.rng.choice((10, 20, 30)),
            custom_attribute_2=f"CC-{cost_centre}",
            custom_attribute_3="Contractor",
        )
        return Planned(CONTRACTORS, fields)

    def partner_contact(self, first: str, last: str) -> Planned:
        rng = self.rng
        agency, domain = rng.choice(self.spec.partners)
        address = f"{ascii_name(first)}.{ascii_name(last)}@{domain}"
        fields = {
            "kind": Kind.CUSTOM_RECIPIENT,
            "first_name": first,
            "last_name": last,
            "display_name": f"{first} {last}",
            "alias": self.unique(self.aliases, f"x-{ascii_name(first)[:1]}{ascii_name(last)}"),
            "primary_smtp": address,
            "target_address": address,
            "company": agency,
            "title": rng.choice(("Consultant", "Account Manager", "Project Lead", "Auditor")),
            "trust_level": rng.choice((0, 0, 0, 20)),
            "custom_attribute_1": f"PO-{rng.randint(2019, 2025)}-{rng.randint(1, 999):04d}",
            "custom_attribute_3": "External",
        }
        return Planned(CONTRACTORS, fields)

    def give_heads_assistants(self, staff: list[Planned]) -> None:
        heads, others = staff[: len(DEPARTMENTS)], staff[len(DEPARTMENTS) :]
        for head in heads:
            team = [p for p in others if p.fields["department"] == head.fields["department"]]
            if team:
                head.fields["assistant"] = self.rng.choice(team).fields["display_name"]

    def lists(self, staff: list[Planned]) -> list[Planned]:
        by_department: dict[str, list[str]] = {}
        for person in staff:
            by_department.setdefault(person.fields["department"], []).append(person.alias)
        teams = [
            self.list(f"{department} Team", aliases, department=department)
            for department, aliases in by_department.items()
        ]
        heads = [person.alias for person in staff[: len(DEPARTMENTS)]]
        everyone = [person.alias for person in staff]
        return [
            *teams,
            self.list("Leadership Team", heads, trust=60),
            self.list("Social Committee", self.rng.sample(everyone, 14)),
            # A list of lists, as Exchange address books nest them.
            self.list("All Staff", [team.alias for team in teams]),
        ]

    def list(self, name: str, members: list[str], department: str = "", trust: int = 0) -> Planned:
        slug = "-".join(ascii_name(word) for word in name.split())
        fields = {
            "kind": Kind.DISTRIBUTION_LIST,
            "display_name": name,
            "alias": f"dl-{slug}",
            "primary_smtp": f"{slug}@{self.spec.domain}",
            "company": self.spec.display_name,
            "department": department,
            "trust_level": trust,
            "custom_attribute_2": f"CC-{DEPARTMENTS[department][0]}" if department else "",
        }
        return Planned(RECIPIENTS, fields, members)
