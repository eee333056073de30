from tests.conftest import login
from tests import factories


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "database": "ok"}


def test_end_user_lands_on_my_tickets(ctx, client):
    factories.end_user(email="ann@example.com")
    resp = login(client, "ann@example.com", factories.PASSWORD)
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/my/tickets")
    assert "My Tickets" in client.get("/my/tickets").get_data(as_text=True)
