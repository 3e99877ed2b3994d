"""Realistic secret-shaped text and the look-alikes that must stay readable.

Shared by every test that checks what people see (ledger records, timeline, Slack, logs):

* :data:`SECRETS` — ``(description, text, secret)``: ``text`` is something a responder or a
  runbook could plausibly produce, ``secret`` the part of it that must never be shown.
* :data:`LOOKALIKES` — ``(description, text)``: values that resemble secrets (hashes,
  addresses, key-free URLs, dates, prose) and must come out of redaction unchanged.
* :data:`HOSTILE` — long inputs that would make a careless pattern backtrack.
* :func:`leaks` — which corpus secrets (and extra values) a set of places shows.

All values are made up; none of them grants access to anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# -- building blocks ---------------------------------------------------------------------------

INFURA_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"
INFURA_WS_KEY = "f364f3ea262488677d94fa88d25724f7"
ALCHEMY_KEY = "oN3Vk8y7Z0rGqC5mLx_2pQdE4aFbHj1t"
ALCHEMY_LETTERS_ONLY_KEY = "QmXkTrPzWbLnVdGsHyJcRfMaEuKoBiYt"
QUICKNODE_TOKEN = "0d5cfa01af06dc080acd5d374caa0a0882c44157"
ANKR_KEY = "d0290ac9ebe29334c5c0735c62f341bf3c1c5e9cabeccd7750cb2685917223d5"
ETHERSCAN_KEY = "YQ8G5KZ2M1P4R7T9W3X6ZB1C4D7E9F2A"
PRIVATE_KEY_1 = "0x8174099687a26621f4e2cdd7cc03b3dacedb3fb962255b1aafd033cabe831530"
PRIVATE_KEY_2 = "0xb10253764c8b233fb37542e23401c7b450e5a6f9751f3b5a014f6f67e8bc999d"
BARE_KEY = "f576104eebeab09651d83acffc77c8b8c6eaa4b767aeab24d7da80f83f51d865"
NODE_KEY = "e4974e3201526fe278451d5a9dd45987357c4eea384c0772f1acf8dccb8201ae"
BLOCK_HASH = "0x496aca80e4d8f29fb8e8cd816c3afb48d3f103970b3a2ee1600c08ca67326dee"
TX_HASH = "0x1b5b9ccb3e8d006a5230de9bda23ff91edc794d4f56410560830b418528e446c"
ADDRESS = "0x00926c40438F9f8F6693a93e815909416f63A54a"
COMMIT = "4015b57a143aec5156fd1444a017a32137a3fd0f"
MNEMONIC_12 = "legal winner thank year wave sausage worth useful legal winner thank yellow"
MNEMONIC_15 = (
    "coin master mouse hour help capital airport exhibit prepare talent arrow twist lunch "
    "march shed"
)
MNEMONIC_24 = (
    "casino bomb upon body sentence repeat unhappy country reveal forest debris burger giraffe "
    "bulb title design purity indicate chase ribbon sphere open maximum disagree"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJycGMtMiIsImlhdCI6MTcwMDAwMDAwMH0"
    ".Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"
)
GITHUB_PAT = "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3sAb"
GITHUB_FINE = "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789abcdefghijKLMNOPQRSTU"
AWS_KEY_ID = "AKIAZ3MHQ7V2XK4PLR6T"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq81kEXAMPLE"
PD_ROUTING_KEY = "R02ABCDEFGHIJKLMNOPQRSTUVWXYZ123"
PD_INTEGRATION_KEY = "b69466b536f8ce43b6356ec1332e05a4"
SLACK_APP_TOKEN = "xapp-1-A05RPC2NODE7-6120412345678-9c1f2e3d4b5a6978c0d1e2f3a4b5c6d7"
PD_API_TOKEN = "y_NbAkKc66ryYTWUXYEu"
PD_USER_TOKEN = "u+Zq4xW8sLm2Nv6Pb3Tc"
PD_ROUTING_KEY_2 = "e93facc04764012d7bfb002500d5d1a6"
PRIVATE_KEY_3 = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
BARE_KEY_2 = "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"
AWS_SECRET_2 = "Zr3Tq9vK1mPx7LwYb5Nc2Hd8Jf4Gs6Ae0Ui+Ro/Q"
KEYSTORE_CIPHERTEXT = "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c"
KEYSTORE_SALT = "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"
KEYSTORE = (
    '{"address": "008aeeda4d805471df9b2a5b0f38a0c3bcba786b", "crypto": {"cipher": '
    '"aes-128-ctr", "ciphertext": "' + KEYSTORE_CIPHERTEXT + '", "cipherparams": {"iv": '
    '"83dbcc02d8ccb40e466191a123791e0e"}, "kdf": "scrypt", "kdfparams": {"dklen": 32, '
    '"n": 262144, "p": 8, "r": 1, "salt": "' + KEYSTORE_SALT + '"}, "mac": '
    '"2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"}, "id": '
    '"3198bc9c-6672-5ab3-d995-4942343ae5b6", "version": 3}'
)
PEM_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo"
)

SECRETS: list[tuple[str, str, str]] = [
    # RPC provider URLs
    (
        "Infura HTTPS endpoint",
        f"eth_blockNumber via https://mainnet.infura.io/v3/{INFURA_KEY} timed out",
        INFURA_KEY,
    ),
    (
        "Infura WebSocket endpoint",
        f"subscribed to wss://sepolia.infura.io/ws/v3/{INFURA_WS_KEY}",
        INFURA_WS_KEY,
    ),
    (
        "Infura endpoint without a scheme",
        f"fallback RPC is mainnet.infura.io/v3/{INFURA_KEY}, primary is rpc-2",
        INFURA_KEY,
    ),
    (
        "Alchemy endpoint",
        f"POST https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY} returned 429",
        ALCHEMY_KEY,
    ),
    (
        "Alchemy key made only of letters",
        f"RPC_URL=https://arb-mainnet.g.alchemy.com/v2/{ALCHEMY_LETTERS_ONLY_KEY}",
        ALCHEMY_LETTERS_ONLY_KEY,
    ),
    (
        "QuickNode endpoint",
        f"https://sparkling-wispy-lake.ethereum-mainnet.quiknode.pro/{QUICKNODE_TOKEN}/ is "
        "40 blocks behind",
        QUICKNODE_TOKEN,
    ),
    ("Ankr endpoint", f"curl -s https://rpc.ankr.com/eth/{ANKR_KEY} -d @req.json", ANKR_KEY),
    (
        "apikey query parameter",
        f"GET https://api.etherscan.io/api?module=proxy&action=eth_blockNumber&apikey={ETHERSCAN_KEY}",
        ETHERSCAN_KEY,
    ),
    (
        "api_key query parameter",
        "https://gateway.example-rpc.io/rpc?api_key=Zx81kq02mW7vB3n&chain=1",
        "Zx81kq02mW7vB3n",
    ),
    (
        "key query parameter",
        "probe https://polygon.example-node.net/jsonrpc?key=s3cr3tK3yValue",
        "s3cr3tK3yValue",
    ),
    (
        "password in URL userinfo",
        "geth attach https://rpcuser:Sup3rS3cretPw@10.0.4.12:8545",
        "Sup3rS3cretPw",
    ),
    (
        "token as URL user",
        f"git clone https://{GITHUB_PAT}@github.com/acme/node-configs.git",
        GITHUB_PAT,
    ),
    (
        "Slack incoming webhook",
        "posting to https://hooks.slack.com/services/T024BE7LD/B08ABCDEF12/k9Qw2xY7zP4mR1sT6vU3nB8c",
        "k9Qw2xY7zP4mR1sT6vU3nB8c",
    ),
    # Authorization headers and tokens
    (
        "bearer token in an Authorization header",
        "Authorization: Bearer 7f3kQ9zL2mX8pW4vN6tB1cR5",
        "7f3kQ9zL2mX8pW4vN6tB1cR5",
    ),
    (
        "basic credentials in an Authorization header",
        "curl -H 'Authorization: Basic cnBjdXNlcjpTdXAzclMzY3JldFB3' http://10.0.4.12:8545",
        "cnBjdXNlcjpTdXAzclMzY3JldFB3",
    ),
    (
        "GitHub token in an Authorization header",
        f"authorization: token {GITHUB_PAT}",
        GITHUB_PAT,
    ),
    (
        "raw credential in an Authorization header",
        "Authorization: pk_live_8Hq2Lm4Nz7Xc",
        "pk_live_8Hq2Lm4Nz7Xc",
    ),
    ("JWT in an engine API log line", f"engine_forkchoiceUpdatedV3 jwt={JWT} ok", JWT),
    ("JWT alone", f"beacon node rejected {JWT}", JWT),
    ("Slack bot token", "SLACK_BOT_TOKEN xoxb-2468013579-1357924680-AbCdEfGhIjKl", "AbCdEfGhIjKl"),
    ("GitHub classic token", f"export GH_TOKEN {GITHUB_PAT}", GITHUB_PAT),
    ("GitHub fine-grained token", f"using {GITHUB_FINE} for the deploy", GITHUB_FINE),
    ("AWS access key id", f"aws configure set aws_access_key_id {AWS_KEY_ID}", AWS_KEY_ID),
    ("AWS secret access key", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    # Keys, seeds and labelled values
    ("private key in an env assignment", f"PRIVATE_KEY={PRIVATE_KEY_1}", PRIVATE_KEY_1[2:]),
    (
        "private key as a CLI flag",
        f"cast send --private-key {PRIVATE_KEY_2} 0xdead 'ping()'",
        PRIVATE_KEY_2[2:],
    ),
    (
        "private key in JSON text",
        f'{{"signerKey": "{PRIVATE_KEY_1}", "chainId": 1}}',
        PRIVATE_KEY_1[2:],
    ),
    (
        "private key in a sentence",
        f"the hot wallet private key is {PRIVATE_KEY_2}",
        PRIVATE_KEY_2[2:],
    ),
    ("bare hex key with a label", f"signer key: {BARE_KEY}", BARE_KEY),
    ("bare hex key printed alone (cat nodekey)", f"{NODE_KEY}\n", NODE_KEY),
    ("validator secret", f"VALIDATOR_SECRET={BARE_KEY}", BARE_KEY),
    ("12-word mnemonic", f"mnemonic: {MNEMONIC_12}", "legal winner thank year wave sausage"),
    ("15-word mnemonic over two lines", MNEMONIC_15.replace("exhibit ", "exhibit\n"), "airport"),
    ("24-word mnemonic", f"restore the wallet with {MNEMONIC_24} then sync", "unhappy country"),
    # Two phrases on adjacent lines: masking the longer one used to leave the other readable.
    (
        "12-word mnemonic above a 15-word one",
        f"old: {MNEMONIC_12}\n{MNEMONIC_15}",
        "legal winner thank year wave sausage",
    ),
    (
        "development mnemonic with commas",
        "seed phrase: test, test, test, test, test, test, test, test, test, test, test, junk",
        "test, test, test, test",
    ),
    (
        "PagerDuty routing key, labelled",
        f'{{"routing_key": "{PD_ROUTING_KEY}", "event_action": "trigger"}}',
        PD_ROUTING_KEY,
    ),
    (
        "PagerDuty integration key with a space label",
        f"PagerDuty integration key {PD_INTEGRATION_KEY} for rpc",
        PD_INTEGRATION_KEY,
    ),
    ("database password in an env line", "DB_PASSWORD=correct-horse-9", "correct-horse-9"),
    ("password in JSON text", '{"user": "rpc", "password": "hunter2!x"}', "hunter2!x"),
    ("client secret", "oauth client_secret: 9fK2mQ7xL4pN8zR1", "9fK2mQ7xL4pN8zR1"),
    (
        "quoted keystore passphrase with spaces",
        'KEYSTORE_PASSPHRASE="staple orbit 42 velvet"',
        "orbit 42 velvet",
    ),
    (
        "RSA private key block",
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n",
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    ),
    (
        "OpenSSH private key block inside other output",
        f"key file:\n-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n"
        "-----END OPENSSH PRIVATE KEY-----\ndone",
        "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW",
    ),
    (
        "private key block cut off by truncation",
        f"-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}\n… [truncated]",
        "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u",
    ),
    # Slack app-level tokens (Socket Mode)
    ("Slack app token", f"SLACK_APP_TOKEN={SLACK_APP_TOKEN}", SLACK_APP_TOKEN[5:]),
    ("Slack app token in a sentence", f"socket mode rejected {SLACK_APP_TOKEN}", "9c1f2e3d"),
    # PagerDuty REST API tokens
    ("PagerDuty API token in an env line", f"PAGERDUTY_TOKEN={PD_API_TOKEN}", PD_API_TOKEN),
    ("PagerDuty token scheme", f"retrying with Token token={PD_API_TOKEN}", PD_API_TOKEN),
    ("PagerDuty API token in JSON text", f'{{"token": "{PD_API_TOKEN}"}}', PD_API_TOKEN),
    ("PagerDuty user API token", f"pd incident list --token {PD_USER_TOKEN}", PD_USER_TOKEN),
    # PagerDuty routing keys with no label
    ("unlabelled PagerDuty routing key", f"events for rpc go to {PD_ROUTING_KEY_2}", "e93facc0"),
    ("unlabelled Event Orchestration key", f"rule set {PD_ROUTING_KEY} routes", PD_ROUTING_KEY),
    ("routing key alone in JSON", f'["{PD_ROUTING_KEY_2}"]', PD_ROUTING_KEY_2),
    # 0x private keys in running text
    ("0x private key in a sentence", f"leaked {PRIVATE_KEY_3} in the deploy log", "4c0883a6"),
    ("0x private key in an alert summary", f"Signer {PRIVATE_KEY_3} exposed on rpc-2", "4c0883"),
    ("0x private key in a JSON value", f'{{"signer": "{PRIVATE_KEY_3}"}}', PRIVATE_KEY_3[2:]),
    # AWS secret access keys
    ("AWS secret key after its key id", f"{AWS_KEY_ID}:{AWS_SECRET_2}", AWS_SECRET_2),
    ("AWS credentials CSV line", f"deploy,{AWS_KEY_ID},{AWS_SECRET_2}", AWS_SECRET_2),
    ("AWS secret key in STS JSON", f'{{"SecretAccessKey": "{AWS_SECRET_2}"}}', AWS_SECRET_2),
    ("AWS secret key with a loose label", f"aws secret {AWS_SECRET_2}", AWS_SECRET_2),
    # bare 64-hex keys after a label that does not say key
    ("bare hex key after a non-key label", f"validator_signer = {BARE_KEY_2}", BARE_KEY_2),
    ("bare hex key in a sentence", f"wallet {BARE_KEY_2} funded the relayer", BARE_KEY_2),
    # Ethereum keystore files
    ("keystore JSON", KEYSTORE, KEYSTORE_CIPHERTEXT),
    ("keystore JSON, its salt", f"cat UTC--keystore.json\n{KEYSTORE}", KEYSTORE_SALT),
    (
        "pretty-printed keystore cut off",
        KEYSTORE.replace(", ", ",\n  ")[:300],
        KEYSTORE_CIPHERTEXT[:40],
    ),
]

LOOKALIKES: list[tuple[str, str]] = [
    ("block hash in a sentence", f"head is block 19000000 with hash {BLOCK_HASH}"),
    ("block hash labelled", f"block hash: {BLOCK_HASH}"),
    ("transaction hash", f"tx {TX_HASH} is stuck in the mempool"),
    ("a lone 0x hash (cast output)", f"{TX_HASH}\n"),
    ("storage key", f"eth_getStorageAt storage key {TX_HASH} at latest"),
    ("public key", f"public key: {BLOCK_HASH}"),
    (
        "validator public key",
        "validator 0x8f3a1bc29d7e4a6b0c5d2e8f1a3b7c9d0e2f4a6b8c1d3e5f7a9b0c2d4e6f8a1b3c5d7e9f0a2b"
        "4c6d8e0f1a3b5c7d9e missed 3 attestations",
    ),
    ("address", f"funds moved to {ADDRESS} at 05:12 UTC"),
    (
        "signature",
        "sig 0x" + "ab12" * 32 + "1b",
    ),
    (
        "proof-of-work block hash alone",
        "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054",
    ),
    (
        "sha256sum line",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  "
        "geth-linux-amd64-1.14.8.tar.gz",
    ),
    (
        "container image digest",
        "image ethereum/client-go@sha256:"
        "496aca80e4d8f29fb8e8cd816c3afb48d3f103970b3a2ee1600c08ca67326dee",
    ),
    ("block explorer link", f"see https://etherscan.io/tx/{TX_HASH}"),
    ("commit link", f"deployed https://github.com/ethereum/go-ethereum/commit/{COMMIT}"),
    ("RPC URL without a key", "rpc is http://127.0.0.1:8545/ and ws://10.0.4.12:8546"),
    (
        "dashboard URL",
        "https://grafana.example.com/d/rpc-latency/rpc?orgId=1&from=now-6h&var-node=rpc-2",
    ),
    ("provider status page", "https://status.infura.io/incidents"),
    ("chain ids", "chainId: 1, chain id 0x89, network 11155111 (sepolia)"),
    ("ISO dates", "impact started 2026-11-22T05:10:00Z, detected 2026-11-22T05:14:31+00:00"),
    ("ordinary English", "Geth on rpc-2 is 40 blocks behind; restarting it fixed the peers."),
    ("basic in prose", "We need basic troubleshooting steps before the postmortem."),
    ("bearer in prose", "The bearer of bad news was the alert, not the node."),
    (
        "many list words in prose",
        "Above all we can keep the system stable and able to act on any alert again today.",
    ),
    ("ERC-20 token", "token: USDC, token transfers delayed by 3 blocks"),
    ("the word secret", "no secrets were exposed; the key rotation is done"),
    ("idempotency key", "idempotency_key: ledger-run-12-step-3"),
    ("Slack ids", "posted in C024BE91L by U024BE7LH"),
    ("gas numbers", "max_fee 30 gwei, priority 2 gwei, nonce 4121"),
    # 64 hex digits labelled as an identifier stay readable
    ("transaction id", f"txid {TX_HASH} confirmed"),
    ("transaction hash in JSON text", f'{{"transactionHash": "{TX_HASH}", "status": "0x1"}}'),
    ("block hash in JSON text", f'{{"blockHash":"{BLOCK_HASH}","blockNumber":"0x121eac0"}}'),
    ("block number then hash", f"block 19000000 {BLOCK_HASH} finalized"),
    ("a list of reorged blocks", f"reorged blocks {BLOCK_HASH}, {TX_HASH}"),
    ("state root", f"stateRoot: {BLOCK_HASH}"),
    ("log topics", f'"topics": ["{TX_HASH}", "0x{"0" * 24}{ADDRESS[2:].lower()}"]'),
    ("padded uint256 data", f"data 0x{'0' * 58}0f4240"),
    ("checksum of a snapshot", f"snapshot sha256 {BARE_KEY[::-1]} verified"),
    ("pretty-printed topics", f'[\n  "{TX_HASH}",\n  "{BLOCK_HASH}"\n]'),
    # 32 hex digits that are identifiers
    ("trace id", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"),
    ("md5 sum", "md5 9e107d9d372bb6826bd81d3542a419d6 for genesis.json"),
    ("alert group hash", "alert group 5d41402abc4b2a76b9719d911017c592 declared INC-7"),
    ("request id", "x-request-id: 7c4a8d09ca3762af61e59520943dc264"),
    # 40 characters that are not AWS secrets; tokens that are ERC-20 tokens
    ("address next to aws", f"aws region us-east-1, contract {ADDRESS}"),
    ("commit next to aws", f"aws-infra deployed {COMMIT}"),
    ("token contract address", "token=0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48 (USDC)"),
    ("token symbol pair", "token: WETH-USDC-LP, token=usdc"),
]

# Inputs that make a careless pattern backtrack (quadratic or worse): one line each.
HOSTILE = [
    "a." * 30000,
    "authorization: " * 4000,
    "key= " * 10000,
    "0x" * 30000,
    " ".join(["abandon"] * 20000),
    "\n".join(["abandon"] * 20000),
    "a_" * 30000,
    "token=" * 10000,
    ("f" * 64 + ", ") * 3000,
    ("1" * 40 + ", ") * 3000,
    "aws " + ("Ab1/" * 10 + " ") * 3000,
    '"crypto": {' * 5000,
]


def leaks(places: Mapping[str, str], extra: Iterable[tuple[str, str]] = ()) -> list[str]:
    """``["<secret> in <place>", …]`` for every corpus secret (and ``(what, value)`` of
    ``extra``) that the text of a place contains: empty when nothing leaked."""
    secrets = [(what, secret) for what, _, secret in SECRETS] + list(extra)
    return [
        f"{what} in {where}"
        for where, text in places.items()
        for what, secret in secrets
        if secret in text
    ]
