from crm.hcps.identifiers import make_npi, npi_check_digit, npi_problem


def test_known_valid_npi():
    # CMS's worked example: 123456789 -> check digit 3
    assert npi_check_digit("123456789") == "3"
    assert npi_problem("1234567893") is None


def test_invalid_npis():
    assert npi_problem("1234567890") == "has a wrong check digit"
    assert "10 digits" in npi_problem("123456789")
    assert npi_problem("12345abc93") == "must be 10 digits"
    assert npi_problem("") == "is required"
    assert npi_problem("１２３４５６７８９３") == "must be 10 digits"


def test_make_npi_is_valid():
    assert all(npi_problem(make_npi(n)) is None for n in range(0, 5000, 7))
