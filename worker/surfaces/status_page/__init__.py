"""The DPO status page that `erasure api` serves at `/`: the requests with their deadlines (overdue
first), one request's systems with status, evidence and reason, its flagged models, and its
certificate to download; with an `operate` token, the open tasks of manual systems to settle and the
request's actions (retry, extend, exempt, move a model flag: actions.py). Server-rendered HTML with
no script, every value escaped.

A browser cannot send a bearer header, so a read token is typed into a form once and traded for a
session cookie that holds no token: `v1.EXPIRY.MAC`, the MAC an HMAC of the expiry and the token's
SHA-256 under a key derived from the store's newest secret. A cookie is checked against every read
token configured now, in constant time, so removing a token ends its sessions and a copied cookie
opens nothing else. SameSite=Strict, POST-only changes and Sec-Fetch-Site keep other sites out."""
