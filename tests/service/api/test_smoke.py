def test_create_device_and_pair(client, tenant):
    h = tenant.admin()
    for mac in ("00:0B:82:A4:6E:BF", "c074ad453b10"):
        r = client.post("/api/v1/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8"}, headers=h)
        assert r.status_code == 201, r.json
        assert r.json["webhook_secret"].startswith("whsec_")
        p = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                                               "device_mac": mac}, headers=h)
        assert p.status_code == 201, p.json
    r = client.post("/api/v1/ha-pairs", json={"primary_mac": "000b82a46ebf", "secondary_mac": "C0-74-AD-45-3B-10"},
                    headers=h)
    assert r.status_code == 201, r.json
    assert r.json["active_mac"] == "00:0B:82:A4:6E:BF" and r.json["epoch"] == 1
    pair_id = r.json["id"]
    r = client.put(f"/api/v1/ha-pairs/{pair_id}/custom-domain", json={"domain": "pbx.example.com"}, headers=h)
    assert r.status_code == 200, r.json
    assert r.json["sync"]["remote_connect"]["state"] == "pending"
