from obsbox.instrumentation._interned import Interned


def test_builds_once_per_key_and_shares_the_value() -> None:
    built: list[str] = []

    def build(key: str) -> list[str]:
        built.append(key)
        return [key]

    table = Interned(build)
    first = table["a"]
    assert table["a"] is first
    assert built == ["a"]


def test_a_full_table_starts_over_instead_of_growing() -> None:
    table = Interned(lambda key: key * 2, limit=2)
    assert (table[1], table[2], table[3]) == (2, 4, 6)
    assert dict(table) == {3: 6}
