"""The initial sync of the three-organization scenario."""

from requestor.cycle import sync_all


def test_it_gives_every_organization_the_others_recipients(scenario):
    rounds = sync_all()

    assert rounds[-1].quiet
    for name in ("ORG1", "ORG2", "ORG3"):
        org = scenario[name]
        expected = {
            person.display_name + other.config.append_display_name
            for other in scenario.others(name)
            for person in other.people
        }
        assert org.contact_names() == expected
