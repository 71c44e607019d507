"""[queue] require_tls: mail for a listed domain never leaves in clear."""
from test_mail_leaves import submit, token, wait_gone, wait_mail
from test_mail_leaves import wait_deferred


def test_require_tls_defers_when_no_starttls_and_delivers_with_it(net, own_hosts, bob):
    fake = net.fake_server("seven", "sink")
    fake.mode = "seven"     # offers no STARTTLS
    strict = own_hosts("warner", users=["wes@warner.test"],
                       queue={"require_tls": "seven.test bob.test", "retry_min": "300",
                              "retry_max": "300"})
    tok = token()
    qid, _ = submit(strict, "wes@warner.test", ["u@seven.test"], tok)
    r = wait_deferred(strict, qid, "u@seven.test")
    assert "4.7.10" in r["last_error"], r["line"]
    assert not [m for m in fake.messages if tok.encode() in m[2]], "sent in clear anyway"
    strict.queue_cmd("delete", qid)
    # bob's tern host offers STARTTLS: the same policy lets mail through
    tok2 = token()
    qid2, _ = submit(strict, "wes@warner.test", ["bob@bob.test"], tok2)
    wait_mail(bob, "bob@bob.test", tok2, sender_host=strict)
    wait_gone(strict, qid2)
