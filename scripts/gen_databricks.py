#!/usr/bin/env python3
"""Deterministic generator of realistic Databricks audit log events (JSON lines).

The events are modelled on Databricks audit logs as Panther's
``Databricks.Audit`` log type sees them: ``version``, ``timestamp`` (epoch ms),
``workspaceId`` (16-digit numeric string), ``accountId``, ``auditLevel``,
``serviceName``, ``actionName``, ``requestId``, ``sessionId`` (sometimes),
``userAgent``, ``sourceIPAddress``, ``userIdentity``, ``requestParams`` and
``response``.

Properties of the generated stream (useful for exercising detection rules):

* one JSON object per line, compact separators, non-decreasing ``timestamp``;
* ~20 workspaces, ~300 ``firstname.lastname@example.com`` users, each with a
  home set of 1-2 workspaces; a few "near miss" users occasionally visit one or
  two more (3-4 distinct at most);
* ``--roamers N`` users (default: 1 in 100 users) additionally log in to 5-8
  distinct workspaces within a few hours, so "same user in 5+ distinct
  workspaces within 24 h" fires for them;
* identity mix: ~6 % ``System-User``, ~1 % ``unknown``, 0.5 % ``userIdentity``
  without ``email``, 0.3 % ``"email": ""``, some service principals whose email
  is a uuid;
* account-level events (``serviceName`` ``accounts``, ``ACCOUNT_LEVEL``) have
  ``workspaceId`` missing in about half of them and ``null`` in the rest;
* ``installLibraryOnAllClusters`` makes up ``--install-all-rate`` (default
  0.5 %) of the events: exactly ``round(rate * events)`` of them, at random
  positions, never by ``System-User`` or ``unknown``.

Output is a pure function of the arguments: all randomness comes from one
``random.Random(seed)`` (uuids included), and gzip output has a fixed header.

Example::

    python3 scripts/gen_databricks.py --events 2000 --seed 7 --hours 48 \\
        --roamers 3 --output demo/databricks-audit-sample.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import io
import json
import os
import sys
import time
from bisect import bisect_right
from itertools import accumulate
from random import Random

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

N_WORKSPACES = 20
N_USERS = 300
N_SERVICE_PRINCIPALS = 12

# Identity mix for ordinary events (cumulative thresholds on rng.random()).
P_SYSTEM = 0.060
P_UNKNOWN = 0.010
P_NO_EMAIL = 0.005
P_EMPTY_EMAIL = 0.003
P_SERVICE_PRINCIPAL = 0.025

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

# --------------------------------------------------------------------------
# Static vocabularies
# --------------------------------------------------------------------------

FIRST_NAMES = (
    "james mary robert patricia john jennifer michael linda david elizabeth "
    "william barbara richard susan joseph jessica thomas sarah charles karen "
    "christopher lisa daniel nancy matthew betty anthony sandra mark margaret "
    "donald ashley steven kimberly andrew emily paul donna joshua michelle "
    "kenneth carol kevin amanda brian melissa george deborah timothy stephanie "
    "ronald rebecca jason sharon edward laura jeffrey cynthia ryan dorothy "
    "jacob amy gary kathleen nicholas angela eric shirley jonathan emma "
    "stephen brenda larry pamela justin nicole scott anna brandon samantha "
    "benjamin katherine samuel christine gregory debra alexander rachel "
    "priya wei aisha hiroshi olga mateo fatima lars ingrid raj"
).split()

LAST_NAMES = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez "
    "hernandez lopez gonzalez wilson anderson thomas taylor moore jackson "
    "martin lee perez thompson white harris sanchez clark ramirez lewis "
    "robinson walker young allen king wright scott torres nguyen hill flores "
    "green adams nelson baker hall rivera campbell mitchell carter roberts "
    "gomez phillips evans turner diaz parker cruz edwards collins reyes "
    "stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper "
    "peterson bailey reed kelly howard ramos kim cox ward richardson watson "
    "brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez "
    "castillo sanders patel myers long ross foster jimenez tanaka kowalski "
    "novak schmidt fischer rossi larsen okafor singh"
).split()

BROWSER_UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 "
    "Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 "
    "Firefox/120.0",
)

API_UAS = (
    "databricks-sdk-py/0.20.0",
    "databricks-sdk-py/0.20.0 python/3.10.12 os/linux auth/pat",
    "mlflow-python/2.9",
    "curl/8.4.0",
    "Apache-HttpClient/4.5",
    "Apache-HttpClient/4.5.14 (Java/1.8.0_392)",
    "databricks-tf-provider/1.33.0 databricks-sdk-go/0.28.1 go/1.21.5 "
    "os/linux terraform/1.6.6 sdk/sdkv2 resource/cluster auth/pat",
    "databricks-cli/0.212.1 databricks-sdk-go/0.29.0 go/1.21.5 os/darwin "
    "cmd/jobs_run-now auth/databricks-cli",
    "python-requests/2.31.0",
)

SERVICE_UAS = (
    "Databricks-Service/driver",
    "Databricks-Service/driver",
    "Databricks-Runtime/13.3.x-scala2.12",
    "wsfsbackend/1.0",
    "Apache-HttpClient/4.5",
)

SPARK_VERSIONS = (
    "13.3.x-scala2.12", "14.2.x-scala2.12", "12.2.x-scala2.12",
    "14.1.x-cpu-ml-scala2.12", "13.3.x-gpu-ml-scala2.12", "11.3.x-scala2.12",
)
NODE_TYPES = (
    "i3.xlarge", "i3.2xlarge", "m5d.large", "m5d.2xlarge", "r5d.4xlarge",
    "c5d.2xlarge", "g4dn.xlarge", "Standard_DS3_v2", "Standard_E8ds_v4",
)
TEAMS = ("data-eng", "analytics", "ml-platform", "finance-bi", "growth",
         "risk", "security", "marketing-science", "platform", "research")
PROJECTS = ("etl", "churn-model", "revenue-report", "feature-store",
            "ad-hoc", "experiments", "dashboards", "ingest", "forecasting",
            "fraud-scoring", "sessionization", "attribution")
NOTEBOOK_NAMES = ("daily_load", "explore", "train_model", "scratch",
                  "backfill_2023", "quality_checks", "feature_pipeline",
                  "export_to_s3", "kpi_rollup", "debug_join", "eda_sales",
                  "score_batch", "merge_upserts", "vacuum_tables")

PYPI_PACKAGES = (
    "pandas==2.1.4", "numpy==1.26.2", "scikit-learn==1.3.2", "xgboost==2.0.2",
    "lightgbm==4.1.0", "requests==2.31.0", "boto3==1.34.11",
    "great-expectations==0.18.7", "databricks-sdk==0.20.0", "mlflow==2.9.2",
    "pyarrow==14.0.2", "openai==1.6.1", "transformers==4.36.2",
    "torch==2.1.2", "shap==0.44.0", "prophet==1.1.5", "delta-spark==3.0.0",
    "azure-storage-blob==12.19.0", "snowflake-connector-python==3.6.0",
    "paramiko==3.4.0", "cryptography==41.0.7", "faker==22.0.0",
)
MAVEN_COORDS = (
    "com.microsoft.azure:spark-mssql-connector_2.12:1.2.0",
    "org.apache.spark:spark-avro_2.12:3.4.1",
    "com.crealytics:spark-excel_2.12:3.4.1_0.19.0",
    "io.delta:delta-sharing-spark_2.12:1.0.3",
    "org.mongodb.spark:mongo-spark-connector_2.12:10.2.1",
    "com.amazonaws:aws-java-sdk-bundle:1.12.262",
    "net.snowflake:spark-snowflake_2.12:2.12.0-spark_3.4",
    "org.postgresql:postgresql:42.7.1",
)
JAR_PATHS = (
    "dbfs:/FileStore/jars/etl-common-assembly-1.4.2.jar",
    "dbfs:/FileStore/jars/udf-library-0.9.0.jar",
    "dbfs:/Volumes/main/default/libs/geospark-1.3.1.jar",
    "s3://corp-artifacts/spark/jdbc-drivers/ojdbc8-21.9.0.0.jar",
)
WHL_PATHS = (
    "dbfs:/FileStore/wheels/corp_utils-2.3.0-py3-none-any.whl",
    "/Workspace/Shared/libs/feature_lib-0.7.1-py3-none-any.whl",
    "dbfs:/Volumes/main/default/libs/scoring-1.0.4-py3-none-any.whl",
)

CATALOGS = ("main", "prod", "dev", "finance", "sandbox", "hive_metastore")
SCHEMAS = ("default", "bronze", "silver", "gold", "sales", "marketing",
           "customers", "ml_features", "raw_events", "reporting")
TABLES = ("orders", "customers", "events", "sessions", "invoices",
          "payments", "clicks", "user_features", "daily_kpis", "inventory",
          "transactions", "subscriptions", "campaigns", "churn_scores",
          "web_logs", "products")

SECRET_SCOPES = ("prod-db", "snowflake", "aws-keys", "api-tokens", "kafka",
                 "sftp-partner", "openai", "jdbc-warehouse")
SECRET_KEYS = ("password", "username", "access_key", "secret_key", "token",
               "client_secret", "private_key", "jdbc_url", "api_key")

DBFS_DIRS = ("/FileStore/tables", "/FileStore/shared_uploads", "/tmp",
             "/mnt/raw/landing", "/mnt/curated/exports", "/user/hive/warehouse",
             "/databricks-datasets/retail-org", "/FileStore/plots",
             "/mnt/ml/artifacts")
DBFS_FILES = ("part-00000.snappy.parquet", "export.csv", "model.pkl",
              "upload_2024.xlsx", "config.json", "_delta_log/00000000000000000012.json",
              "sample.json.gz", "report.pdf", "plot_1.png")

COMMANDS = (
    ("python", "df = spark.read.table(\"main.silver.orders\")\n"
               "display(df.filter(\"order_date >= '2023-12-01'\").groupBy(\"region\").count())"),
    ("python", "from pyspark.sql import functions as F\n"
               "events = spark.table(\"prod.raw_events.clicks\")\n"
               "daily = events.groupBy(F.to_date(\"ts\").alias(\"d\")).agg(F.countDistinct(\"user_id\"))"),
    ("sql", "SELECT customer_id, sum(amount) AS total FROM finance.gold.invoices "
            "WHERE invoice_date >= date_sub(current_date(), 30) GROUP BY customer_id ORDER BY total DESC LIMIT 100"),
    ("sql", "MERGE INTO main.silver.customers t USING updates s ON t.id = s.id "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"),
    ("python", "import mlflow\nmlflow.set_experiment(\"/Shared/churn-model\")\n"
               "with mlflow.start_run():\n    model.fit(X_train, y_train)\n    mlflow.log_metric(\"auc\", auc)"),
    ("scala", "val df = spark.read.format(\"delta\").load(\"/mnt/raw/landing/events\")\n"
              "df.write.mode(\"overwrite\").saveAsTable(\"dev.bronze.events\")"),
    ("python", "%pip install -q great-expectations==0.18.7"),
    ("sql", "OPTIMIZE prod.gold.daily_kpis ZORDER BY (kpi_date)"),
    ("python", "dbutils.fs.ls(\"/mnt/curated/exports\")"),
    ("python", "token = dbutils.secrets.get(scope=\"api-tokens\", key=\"token\")\n"
               "resp = requests.get(API_URL, headers={\"Authorization\": f\"Bearer {token}\"}, timeout=30)"),
    ("sql", "DESCRIBE HISTORY main.silver.orders"),
    ("python", "display(spark.sql(\"SHOW TABLES IN sandbox.default\"))"),
    ("python", "import pandas as pd\n"
               "pdf = spark.table(\"finance.gold.invoices\").where(\"invoice_date >= '2023-10-01'\").toPandas()\n"
               "pdf[\"month\"] = pd.to_datetime(pdf[\"invoice_date\"]).dt.to_period(\"M\")\n"
               "summary = pdf.groupby([\"month\", \"region\"]).agg(total=(\"amount\", \"sum\"), n=(\"invoice_id\", \"count\"))\n"
               "display(summary.reset_index())"),
    ("python", "from delta.tables import DeltaTable\n"
               "target = DeltaTable.forName(spark, \"main.silver.sessions\")\n"
               "updates = spark.read.format(\"json\").load(\"/mnt/raw/landing/sessions/2024/01/\")\n"
               "(target.alias(\"t\").merge(updates.alias(\"s\"), \"t.session_id = s.session_id\")\n"
               " .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())"),
    ("sql", "CREATE OR REPLACE TEMP VIEW recent_orders AS\n"
            "SELECT o.order_id, o.customer_id, c.segment, o.amount, o.order_ts\n"
            "FROM main.silver.orders o JOIN main.silver.customers c ON o.customer_id = c.id\n"
            "WHERE o.order_ts >= current_timestamp() - INTERVAL 7 DAYS"),
    ("python", "from sklearn.model_selection import train_test_split\n"
               "from sklearn.ensemble import GradientBoostingClassifier\n"
               "X = features.drop(columns=[\"churned\"]); y = features[\"churned\"]\n"
               "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)\n"
               "model = GradientBoostingClassifier(n_estimators=300, max_depth=4).fit(X_train, y_train)"),
    ("r", "library(SparkR)\ndf <- sql(\"SELECT * FROM main.gold.daily_kpis\")\nhead(df, 20)"),
)

ERRORS = {
    400: ("INVALID_PARAMETER_VALUE: Missing required field: cluster_id",
          "INVALID_PARAMETER_VALUE: Library installation failed: package not found",
          "BAD_REQUEST: Malformed request body",
          "INVALID_STATE: Cluster is in unexpected state Terminating"),
    403: ("PERMISSION_DENIED: User does not have permission to perform this action",
          "Invalid access token.",
          "PERMISSION_DENIED: Only admins can perform this operation",
          "User is not a member of this workspace."),
    404: ("RESOURCE_DOES_NOT_EXIST: Cluster does not exist",
          "RESOURCE_DOES_NOT_EXIST: Path does not exist",
          "NOT_FOUND: Table does not exist",
          "RESOURCE_DOES_NOT_EXIST: Secret does not exist with scope and key"),
    500: ("INTERNAL_ERROR: Internal error occurred. Please retry.",
          "TEMPORARILY_UNAVAILABLE: The service is temporarily unavailable"),
}

# Hour-of-day (UTC) activity weights.
DIURNAL = (3, 2, 2, 2, 3, 4, 6, 9, 13, 16, 17, 17, 16, 17, 17, 16, 14, 12,
           10, 8, 7, 6, 5, 4)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _pick(rng: Random, seq):
    """rng.choice() without its Python-level overhead (deterministic too)."""
    return seq[int(rng.random() * len(seq))]


_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET = (0x4 << 76) | (0x2 << 62)


def make_uuid(rng: Random) -> str:
    """A version-4 uuid string drawn from ``rng`` (never uuid4())."""
    h = "%032x" % ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def cluster_id(rng: Random) -> str:
    return "%02d%02d-%02d%02d%02d-%s" % (
        rng.randint(1, 12), rng.randint(1, 28), rng.randrange(24),
        rng.randrange(60), rng.randrange(60),
        "".join(_pick(rng, "abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8)))


def fmt_ms(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts // 1000)) + ".%03d" % (ts % 1000)


class World:
    """Pre-built pools (workspaces, users, clusters, ...) for one run."""

    def __init__(self, rng: Random, n_roamers: int | None):
        self.account_id = make_uuid(rng)
        self.metastore_id = make_uuid(rng)
        seen = set()
        self.workspaces = []
        while len(self.workspaces) < N_WORKSPACES:
            w = str(rng.randrange(10 ** 15, 10 ** 16))
            if w not in seen:
                seen.add(w)
                self.workspaces.append(w)
        self.ws_hosts = {
            w: "dbc-%s.cloud.databricks.com" % ("%08x" % rng.getrandbits(32))
            for w in self.workspaces}

        # Per-workspace resources.
        self.clusters = {}
        self.jobs = {}
        self.warehouses = {}
        for w in self.workspaces:
            cl = []
            for _ in range(rng.randint(6, 14)):
                cl.append((cluster_id(rng), "%s-%s-%s" % (
                    _pick(rng, TEAMS), _pick(rng, ("shared", "etl", "ml", "adhoc", "prod", "dev")),
                    _pick(rng, ("small", "medium", "large", "gpu", "photon"))),
                    _pick(rng, SPARK_VERSIONS), _pick(rng, NODE_TYPES)))
            self.clusters[w] = cl
            self.jobs[w] = [(rng.randrange(10 ** 13, 10 ** 15),
                             "%s %s" % (_pick(rng, PROJECTS), _pick(rng, ("nightly", "hourly", "weekly", "backfill", "refresh"))))
                            for _ in range(rng.randint(5, 15))]
            self.warehouses[w] = ["%016x" % rng.getrandbits(64) for _ in range(rng.randint(1, 3))]

        # Users.
        used = set()
        self.users = []
        for i in range(N_USERS):
            base = "%s.%s" % (_pick(rng, FIRST_NAMES), _pick(rng, LAST_NAMES))
            name, k = base, 1
            while name in used:
                k += 1
                name = "%s%d" % (base, k)
            used.add(name)
            email = name + "@example.com"
            n_home = 1 if rng.random() < 0.55 else 2
            home = rng.sample(self.workspaces, n_home)
            extra = ()
            if rng.random() < 0.07:  # near miss: occasionally 3-4 workspaces
                extra = tuple(rng.sample([w for w in self.workspaces if w not in home],
                                         rng.randint(1, 2)))
            ips = tuple(self._ip(rng) for _ in range(rng.randint(1, 3)))
            u = {
                "email": email,
                "home": tuple(home),
                "extra": extra,
                "ips": ips,
                "browser": _pick(rng, BROWSER_UAS),
                "api": _pick(rng, API_UAS),
                "api_share": _pick(rng, (0.05, 0.1, 0.2, 0.4)),
                "sess": None,
                "sess_until": 0,
                "team": _pick(rng, TEAMS),
            }
            self.users.append(u)
        # Skewed activity (a few heavy users, a long tail).
        self.user_cum = list(accumulate(rng.paretovariate(1.3) for _ in self.users))

        self.sps = []
        for _ in range(N_SERVICE_PRINCIPALS):
            self.sps.append({
                "email": make_uuid(rng),
                "home": (_pick(rng, self.workspaces),),
                "extra": (),
                "ips": (self._ip(rng),),
                "browser": _pick(rng, API_UAS),
                "api": _pick(rng, API_UAS),
                "api_share": 1.0,
                "sess": None,
                "sess_until": 0,
                "team": "platform",
            })

        if n_roamers is None:
            n_roamers = max(1, round(N_USERS / 100))
        n_roamers = max(0, min(n_roamers, N_USERS))
        self.roamers = rng.sample(range(N_USERS), n_roamers)

        self.misc_ips = tuple(self._ip(rng) for _ in range(64))
        self.tables = tuple("%s.%s.%s" % (_pick(rng, CATALOGS), _pick(rng, SCHEMAS), _pick(rng, TABLES))
                            for _ in range(120))
        self.token_ids = tuple("%064x" % rng.getrandbits(256) for _ in range(200))
        self.group_names = tuple("%s-%s" % (t, r) for t in TEAMS
                                 for r in ("admins", "users", "readers"))

    @staticmethod
    def _ip(rng: Random) -> str:
        r = rng.random()
        if r < 0.25:
            return "192.0.2.%d" % rng.randint(1, 254)
        if r < 0.45:
            return "198.51.100.%d" % rng.randint(1, 254)
        if r < 0.65:
            return "203.0.113.%d" % rng.randint(1, 254)
        if r < 0.85:
            return "10.%d.%d.%d" % (rng.randrange(256), rng.randrange(256), rng.randint(1, 254))
        if r < 0.95:
            return "172.%d.%d.%d" % (rng.randint(16, 31), rng.randrange(256), rng.randint(1, 254))
        return "192.168.%d.%d" % (rng.randrange(256), rng.randint(1, 254))


# --------------------------------------------------------------------------
# requestParams builders: f(rng, world, ws, email) -> (params, result)
# --------------------------------------------------------------------------

def _cluster(rng, world, ws):
    return _pick(rng, world.clusters[ws])


def _library(rng):
    r = rng.random()
    if r < 0.6:
        return {"pypi": {"package": _pick(rng, PYPI_PACKAGES)}}
    if r < 0.8:
        return {"maven": {"coordinates": _pick(rng, MAVEN_COORDS)}}
    if r < 0.92:
        return {"jar": _pick(rng, JAR_PATHS)}
    return {"whl": _pick(rng, WHL_PATHS)}


def _nb_path(rng, email):
    return "/Users/%s/%s/%s" % (email or "shared", _pick(rng, PROJECTS), _pick(rng, NOTEBOOK_NAMES))


def _cluster_spec(rng, world, ws, email, cid=None):
    c = _cluster(rng, world, ws)
    spec = {}
    if cid:
        spec["cluster_id"] = c[0]
    spec["cluster_name"] = c[1]
    spec["spark_version"] = c[2]
    spec["node_type_id"] = c[3]
    spec["driver_node_type_id"] = c[3]
    if rng.random() < 0.6:
        lo = rng.randint(1, 4)
        spec["autoscale"] = {"min_workers": lo, "max_workers": lo + rng.randint(2, 16)}
    else:
        spec["num_workers"] = rng.randint(0, 8)
    spec["autotermination_minutes"] = _pick(rng, (20, 30, 60, 120))
    spec["spark_conf"] = {"spark.databricks.delta.preview.enabled": "true",
                          "spark.sql.shuffle.partitions": str(_pick(rng, (64, 200, 400)))}
    spec["custom_tags"] = {"team": _pick(rng, TEAMS), "cost_center": "cc-%04d" % rng.randrange(10000)}
    spec["enable_elastic_disk"] = True
    spec["data_security_mode"] = _pick(rng, ("USER_ISOLATION", "SINGLE_USER", "NONE"))
    spec["runtime_engine"] = _pick(rng, ("PHOTON", "STANDARD"))
    spec["cluster_source"] = _pick(rng, ("UI", "API", "JOB"))
    return spec, c[0]


def p_cluster_create(rng, world, ws, email):
    spec, cid = _cluster_spec(rng, world, ws, email)
    spec["cluster_creator"] = email or "System-User"
    return spec, '{"cluster_id":"%s"}' % cid


def p_cluster_edit(rng, world, ws, email):
    spec, _ = _cluster_spec(rng, world, ws, email, cid=True)
    return spec, None


def p_cluster_simple(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    return {"cluster_id": c[0], "cluster_name": c[1],
            "spark_version": c[2], "node_type_id": c[3],
            "cluster_state": _pick(rng, ("TERMINATED", "RUNNING", "PENDING")),
            "reason": _pick(rng, ("USER_REQUEST", "INACTIVITY", "JOB_FINISHED"))}, None


def p_cluster_resize(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    return {"cluster_id": c[0], "num_workers": rng.randint(1, 24),
            "target_workers": rng.randint(1, 24), "cluster_name": c[1],
            "avoid_containers": "false", "reason": "AUTOSCALE"}, None


def p_cluster_acl(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    return {"shardName": "shard-%d" % rng.randrange(100), "aclPermissionSet": "CAN_RESTART",
            "targetUserId": str(rng.randrange(10 ** 14, 10 ** 15)), "resourceId": c[0],
            "cluster_name": c[1]}, None


def p_install_library(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    return {"clusterId": c[0], "cluster_name": c[1],
            "library": _library(rng),
            "source": _pick(rng, ("UI", "API", "NOTEBOOK")),
            "spark_version": c[2]}, None


def p_install_all(rng, world, ws, email):
    return {"library": _library(rng),
            "isAllClusters": True,
            "scope": "WORKSPACE",
            "source": _pick(rng, ("UI", "API")),
            "workspaceUrl": "https://" + world.ws_hosts[ws]}, None


def p_run_command(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    lang, text = _pick(rng, COMMANDS)
    return {"notebookId": str(rng.randrange(10 ** 14, 10 ** 16)),
            "executionTime": "%.3f" % (rng.expovariate(0.4)),
            "status": _pick(rng, ("finished", "finished", "finished", "error", "skipped")),
            "clusterId": c[0],
            "commandId": "%d" % rng.randrange(10 ** 15, 10 ** 16),
            "commandLanguage": lang,
            "commandText": text}, None


def p_attach_notebook(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    return {"path": _nb_path(rng, email), "clusterId": c[0],
            "notebookId": str(rng.randrange(10 ** 14, 10 ** 16)),
            "cluster_name": c[1]}, None


def p_create_notebook(rng, world, ws, email):
    return {"notebookId": str(rng.randrange(10 ** 14, 10 ** 16)),
            "path": _nb_path(rng, email),
            "language": _pick(rng, ("PYTHON", "SQL", "SCALA", "R")),
            "format": "SOURCE"}, None


def _job(rng, world, ws):
    return _pick(rng, world.jobs[ws])


def p_jobs_run_now(rng, world, ws, email):
    jid, name = _job(rng, world, ws)
    run = rng.randrange(10 ** 14, 10 ** 15)
    return {"job_id": jid, "job_name": name,
            "notebook_params": '{"run_date":"2024-01-%02d","env":"%s"}' % (rng.randint(1, 28), _pick(rng, ("prod", "dev"))),
            "idempotency_token": make_uuid(rng)}, '{"run_id":%d,"number_in_job":%d}' % (run, run)


def p_jobs_create(rng, world, ws, email):
    jid, name = _job(rng, world, ws)
    c = _cluster(rng, world, ws)
    return {"name": name, "existing_cluster_id": c[0],
            "notebook_task": '{"notebook_path":"%s"}' % _nb_path(rng, email),
            "schedule": '{"quartz_cron_expression":"0 0 %d * * ?","timezone_id":"UTC"}' % rng.randrange(24),
            "email_notifications": '{"on_failure":["%s"]}' % (email or "ops@example.com"),
            "max_concurrent_runs": "1"}, '{"job_id":%d}' % jid


def p_jobs_submit(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    run = rng.randrange(10 ** 14, 10 ** 15)
    return {"run_name": "%s-%s" % (_pick(rng, PROJECTS), _pick(rng, ("adhoc", "airflow", "dbt"))),
            "existing_cluster_id": c[0],
            "notebook_task": '{"notebook_path":"%s","base_parameters":{}}' % _nb_path(rng, email),
            "timeout_seconds": "3600", "idempotency_token": make_uuid(rng)}, '{"run_id":%d}' % run


def p_jobs_run_event(rng, world, ws, email):
    jid, name = _job(rng, world, ws)
    c = _cluster(rng, world, ws)
    return {"jobId": str(jid), "runId": str(rng.randrange(10 ** 14, 10 ** 15)),
            "jobClusterType": _pick(rng, ("new", "existing")), "jobTriggerType": "cron",
            "jobTaskType": "notebook", "orgId": ws, "idInJob": str(rng.randrange(10 ** 5)),
            "clusterId": c[0], "taskKey": name.replace(" ", "_")}, None


def p_login(rng, world, ws, email):
    return {"user": email or "unknown",
            "authenticationMethod": _pick(rng, ("PASSWORD", "SSO", "OAUTH")),
            "loginRedirect": "https://%s/?o=%s" % (world.ws_hosts[ws], ws) if ws else "https://accounts.cloud.databricks.com/"}, None


def p_token_login(rng, world, ws, email):
    return {"user": email or "unknown", "tokenId": _pick(rng, world.token_ids),
            "authenticationMethod": "API_INT_PAT_TOKEN"}, None


def p_logout(rng, world, ws, email):
    return {"user": email or "unknown", "sessionType": "BROWSER"}, None


def p_group_member(rng, world, ws, email):
    return {"targetGroupName": _pick(rng, world.group_names),
            "targetGroupId": str(rng.randrange(10 ** 14, 10 ** 15)),
            "targetUserName": _pick(rng, world.users)["email"],
            "targetUserId": str(rng.randrange(10 ** 14, 10 ** 15)),
            "endpoint": "scim"}, None


def p_create_group(rng, world, ws, email):
    return {"groupName": _pick(rng, world.group_names) + "-%d" % rng.randrange(100),
            "groupId": str(rng.randrange(10 ** 14, 10 ** 15)),
            "endpoint": "scim", "entitlements": '["workspace-access","databricks-sql-access"]'}, None


WS_CONF_KEYS = ("enableTokensConfig", "enableIpAccessLists", "maxTokenLifetimeDays",
                "enableResultsDownloading", "enableExportNotebook", "enableDbfsFileBrowser",
                "enableWebTerminal", "enableVerboseAuditLogs", "storeInteractiveNotebookResultsInCustomerAccount")


def p_ws_conf_edit(rng, world, ws, email):
    return {"workspaceConfKeys": _pick(rng, WS_CONF_KEYS),
            "workspaceConfValues": _pick(rng, ("true", "false", "90")),
            "workspaceUrl": "https://" + world.ws_hosts[ws]}, None


def p_ws_conf_get(rng, world, ws, email):
    return {"keys": ",".join(rng.sample(WS_CONF_KEYS, rng.randint(1, 4))),
            "workspaceUrl": "https://" + world.ws_hosts[ws]}, None


def p_get_secret(rng, world, ws, email):
    return {"scope": _pick(rng, SECRET_SCOPES), "key": _pick(rng, SECRET_KEYS),
            "clusterId": _cluster(rng, world, ws)[0],
            "notebookId": str(rng.randrange(10 ** 14, 10 ** 16))}, None


def p_list_secrets(rng, world, ws, email):
    return {"scope": _pick(rng, SECRET_SCOPES),
            "clusterId": _cluster(rng, world, ws)[0]}, None


def p_put_secret(rng, world, ws, email):
    return {"scope": _pick(rng, SECRET_SCOPES), "key": _pick(rng, SECRET_KEYS),
            "string_value_size": str(rng.randint(8, 2048))}, None


def _uc_common(rng, world, ws):
    return {"metastore_id": world.metastore_id, "workspace_id": ws,
            "include_manifest_capabilities": "true"}


def p_get_table(rng, world, ws, email):
    t = _pick(rng, world.tables)
    d = {"full_name_arg": t, "include_delta_metadata": _pick(rng, ("true", "false")),
         "include_browse": "true"}
    d.update(_uc_common(rng, world, ws))
    return d, None


def p_get_catalog(rng, world, ws, email):
    d = {"name_arg": _pick(rng, CATALOGS), "include_browse": "true"}
    d.update(_uc_common(rng, world, ws))
    return d, None


def p_get_schema(rng, world, ws, email):
    d = {"full_name_arg": "%s.%s" % (_pick(rng, CATALOGS), _pick(rng, SCHEMAS))}
    d.update(_uc_common(rng, world, ws))
    return d, None


def p_temp_cred(rng, world, ws, email):
    t = _pick(rng, world.tables)
    d = {"table_full_name": t, "table_id": make_uuid(rng),
         "operation": _pick(rng, ("READ", "READ", "READ_WRITE")),
         "credential_type": "aws_temp_credentials"}
    d.update(_uc_common(rng, world, ws))
    return d, None


def p_create_table(rng, world, ws, email):
    t = _pick(rng, world.tables)
    cat, sch, name = t.split(".")
    d = {"name": name, "catalog_name": cat, "schema_name": sch,
         "table_type": _pick(rng, ("MANAGED", "EXTERNAL")), "data_source_format": "DELTA",
         "storage_location": "s3://corp-lake-%s/%s/%s" % (cat, sch, name)}
    d.update(_uc_common(rng, world, ws))
    return d, None


def p_uc_permissions(rng, world, ws, email):
    d = {"securable_type": "table", "securable_full_name": _pick(rng, world.tables),
         "changes": '[{"principal":"%s","add":["SELECT"]}]' % _pick(rng, world.group_names)}
    d.update(_uc_common(rng, world, ws))
    return d, None


def p_dbfs(rng, world, ws, email):
    return {"path": "%s/%s" % (_pick(rng, DBFS_DIRS), _pick(rng, DBFS_FILES)),
            "overwrite": _pick(rng, ("true", "false")),
            "clusterId": _cluster(rng, world, ws)[0]}, None


def p_dbfs_dir(rng, world, ws, email):
    return {"path": "%s/%s" % (_pick(rng, DBFS_DIRS), _pick(rng, PROJECTS)),
            "recursive": _pick(rng, ("true", "false"))}, None


def p_sql_perm(rng, world, ws, email):
    t = _pick(rng, world.tables)
    return {"securable": "TABLE `%s`" % t.replace(".", "`.`"),
            "principal": _pick(rng, world.group_names),
            "actionTypes": _pick(rng, ("SELECT", "SELECT,MODIFY", "ALL PRIVILEGES")),
            "clusterId": _cluster(rng, world, ws)[0]}, None


def p_iam_role(rng, world, ws, email):
    return {"instanceProfileArn": "arn:aws:iam::%012d:instance-profile/databricks-%s" % (
                rng.randrange(10 ** 12), _pick(rng, TEAMS)),
            "principal": _pick(rng, world.group_names),
            "isMetaInstanceProfile": "false"}, None


def p_sql_command(rng, world, ws, email):
    lang, text = _pick(rng, COMMANDS)
    if lang != "sql":
        text = "SELECT * FROM %s WHERE dt = current_date() LIMIT 1000" % _pick(rng, world.tables)
    return {"warehouseId": _pick(rng, world.warehouses[ws]),
            "commandId": make_uuid(rng), "commandText": text}, None


def p_repo(rng, world, ws, email):
    return {"path": "/Repos/%s/%s" % (email or "shared", _pick(rng, PROJECTS)),
            "url": "https://github.com/example-corp/%s.git" % _pick(rng, PROJECTS),
            "provider": "gitHub", "branch": _pick(rng, ("main", "develop", "feature/backfill"))}, None


def p_mlflow(rng, world, ws, email):
    return {"experimentId": str(rng.randrange(10 ** 14, 10 ** 16)),
            "path": "/Users/%s/%s" % (email or "shared", _pick(rng, PROJECTS)),
            "runId": "%032x" % rng.getrandbits(128)}, None


def p_model_registry(rng, world, ws, email):
    return {"name": "%s_model" % _pick(rng, PROJECTS).replace("-", "_"),
            "version": str(rng.randint(1, 40)), "stage": _pick(rng, ("Production", "Staging", "None"))}, None


def p_web_terminal(rng, world, ws, email):
    c = _cluster(rng, world, ws)
    return {"clusterId": c[0], "socketGUID": make_uuid(rng)}, None


# (serviceName, actionName, weight, builder, account_level_fraction)
ACTIONS = (
    ("clusters", "create", 10, p_cluster_create, 0.0),
    ("clusters", "edit", 6, p_cluster_edit, 0.0),
    ("clusters", "start", 12, p_cluster_simple, 0.0),
    ("clusters", "restart", 5, p_cluster_simple, 0.0),
    ("clusters", "delete", 6, p_cluster_simple, 0.0),
    ("clusters", "resize", 4, p_cluster_resize, 0.0),
    ("clusters", "permanentDelete", 1, p_cluster_simple, 0.0),
    ("clusters", "changeClusterAcl", 2, p_cluster_acl, 0.0),
    ("clusters", "installLibrary", 8, p_install_library, 0.0),
    ("clusters", "uninstallLibrary", 3, p_install_library, 0.0),
    ("notebook", "runCommand", 200, p_run_command, 0.0),
    ("notebook", "attachNotebook", 40, p_attach_notebook, 0.0),
    ("notebook", "detachNotebook", 15, p_attach_notebook, 0.0),
    ("notebook", "createNotebook", 10, p_create_notebook, 0.0),
    ("notebook", "deleteNotebook", 3, p_create_notebook, 0.0),
    ("jobs", "runNow", 15, p_jobs_run_now, 0.0),
    ("jobs", "create", 5, p_jobs_create, 0.0),
    ("jobs", "submitRun", 12, p_jobs_submit, 0.0),
    ("jobs", "runStart", 12, p_jobs_run_event, 0.0),
    ("jobs", "runSucceeded", 10, p_jobs_run_event, 0.0),
    ("jobs", "runFailed", 2, p_jobs_run_event, 0.0),
    ("accounts", "login", 25, p_login, 0.2),
    ("accounts", "tokenLogin", 60, p_token_login, 0.0),
    ("accounts", "samlLogin", 10, p_login, 0.2),
    ("accounts", "aadBrowserLogin", 10, p_login, 0.2),
    ("accounts", "logout", 8, p_logout, 0.2),
    ("accounts", "addPrincipalToGroup", 3, p_group_member, 0.8),
    ("accounts", "removePrincipalFromGroup", 1, p_group_member, 0.8),
    ("accounts", "createGroup", 1, p_create_group, 0.8),
    ("workspace", "workspaceConfEdit", 2, p_ws_conf_edit, 0.0),
    ("workspace", "getWorkspaceConf", 15, p_ws_conf_get, 0.0),
    ("secrets", "getSecret", 40, p_get_secret, 0.0),
    ("secrets", "listSecrets", 10, p_list_secrets, 0.0),
    ("secrets", "putSecret", 2, p_put_secret, 0.0),
    ("unityCatalog", "getTable", 80, p_get_table, 0.0),
    ("unityCatalog", "getCatalog", 30, p_get_catalog, 0.0),
    ("unityCatalog", "getSchema", 20, p_get_schema, 0.0),
    ("unityCatalog", "generateTemporaryTableCredential", 50, p_temp_cred, 0.0),
    ("unityCatalog", "createTable", 3, p_create_table, 0.0),
    ("unityCatalog", "updatePermissions", 2, p_uc_permissions, 0.0),
    ("dbfs", "put", 10, p_dbfs, 0.0),
    ("dbfs", "read", 20, p_dbfs, 0.0),
    ("dbfs", "getStatus", 20, p_dbfs, 0.0),
    ("dbfs", "mkdirs", 8, p_dbfs_dir, 0.0),
    ("dbfs", "delete", 4, p_dbfs_dir, 0.0),
    ("sqlPermissions", "grantPermission", 3, p_sql_perm, 0.0),
    ("sqlPermissions", "revokePermission", 1, p_sql_perm, 0.0),
    ("sqlPermissions", "requestPermissions", 3, p_sql_perm, 0.0),
    ("iamRole", "changeIamRoleAssignment", 1, p_iam_role, 0.0),
    ("iamRole", "changeIamRoleAcl", 1, p_iam_role, 0.0),
    ("databrickssql", "commandSubmit", 25, p_sql_command, 0.0),
    ("databrickssql", "commandFinish", 25, p_sql_command, 0.0),
    ("repos", "pull", 4, p_repo, 0.0),
    ("repos", "createRepo", 1, p_repo, 0.0),
    ("mlflowExperiment", "createMlflowExperiment", 3, p_mlflow, 0.0),
    ("modelRegistry", "getModelVersionDownloadUri", 4, p_model_registry, 0.0),
    ("webTerminal", "startSession", 1, p_web_terminal, 0.0),
)
INSTALL_ALL = ("clusters", "installLibraryOnAllClusters", 0, p_install_all, 0.0)

# What System-User (automation) mostly does.
SYSTEM_ACTIONS = (
    ("clusters", "start", 10, p_cluster_simple, 0.0),
    ("clusters", "delete", 10, p_cluster_simple, 0.0),
    ("clusters", "resize", 25, p_cluster_resize, 0.0),
    ("clusters", "create", 5, p_cluster_create, 0.0),
    ("jobs", "runStart", 15, p_jobs_run_event, 0.0),
    ("jobs", "runSucceeded", 15, p_jobs_run_event, 0.0),
    ("jobs", "runFailed", 2, p_jobs_run_event, 0.0),
    ("unityCatalog", "generateTemporaryTableCredential", 10, p_temp_cred, 0.0),
    ("dbfs", "getStatus", 5, p_dbfs, 0.0),
)

# "unknown" identities are mostly failed or anonymous logins.
UNKNOWN_ACTIONS = (
    ("accounts", "login", 30, p_login, 0.3),
    ("accounts", "tokenLogin", 50, p_token_login, 0.0),
    ("accounts", "samlLogin", 10, p_login, 0.3),
    ("accounts", "aadBrowserLogin", 10, p_login, 0.3),
)

ROAM_FOLLOWUPS = (
    ("notebook", "attachNotebook", 2, p_attach_notebook, 0.0),
    ("workspace", "getWorkspaceConf", 2, p_ws_conf_get, 0.0),
    ("secrets", "listSecrets", 2, p_list_secrets, 0.0),
    ("secrets", "getSecret", 2, p_get_secret, 0.0),
    ("dbfs", "read", 1, p_dbfs, 0.0),
    ("unityCatalog", "getTable", 2, p_get_table, 0.0),
    ("unityCatalog", "getCatalog", 1, p_get_catalog, 0.0),
)
ROAM_LOGINS = (
    ("accounts", "login", 1, p_login, 0.0),
    ("accounts", "samlLogin", 1, p_login, 0.0),
    ("accounts", "aadBrowserLogin", 1, p_login, 0.0),
    ("accounts", "tokenLogin", 1, p_token_login, 0.0),
)

_STATUS = (200, 400, 403, 404, 500)
_STATUS_CUM = (0.93, 0.955, 0.98, 0.995, 1.0)


def _cum(actions):
    return list(accumulate(a[2] for a in actions))


# --------------------------------------------------------------------------
# Event rendering
# --------------------------------------------------------------------------

class Generator:
    def __init__(self, args):
        self.rng = rng = Random(args.seed)
        self.world = World(rng, args.roamers)
        self.start = args.start
        self.span = max(1, int(args.hours * HOUR_MS))
        self.n = args.events
        self.install_rate = args.install_all_rate
        self.panther = args.panther_fields
        self.main_cum = _cum(ACTIONS)
        self.sys_cum = _cum(SYSTEM_ACTIONS)
        self.unk_cum = _cum(UNKNOWN_ACTIONS)
        self.fol_cum = _cum(ROAM_FOLLOWUPS)

    # -- timestamps ---------------------------------------------------------
    def _timestamps(self, k):
        rng = self.rng
        nb = -(-self.span // HOUR_MS)
        h0 = (self.start // HOUR_MS) % 24
        weights = [DIURNAL[(h0 + b) % 24] for b in range(nb)]
        if nb * HOUR_MS > self.span:  # partial last hour
            weights[-1] *= (self.span - (nb - 1) * HOUR_MS) / HOUR_MS
        buckets = rng.choices(range(nb), weights=weights, k=k)
        last = self.span - 1
        rr = rng.random
        out = []
        for b in buckets:
            off = b * HOUR_MS + int(rr() * HOUR_MS)
            out.append(self.start + (off if off < last else last))
        out.sort()
        return out

    # -- roaming bursts -----------------------------------------------------
    def _roam_bursts(self):
        rng, world = self.rng, self.world
        plans = []
        end = self.start + self.span - 1
        for ui in world.roamers:
            user = world.users[ui]
            k = rng.randint(5, 8)
            wss = rng.sample(world.workspaces, k)
            dur = min(rng.randint(90, 240) * 60_000, self.span)
            t0 = self.start + rng.randrange(max(1, self.span - dur))
            offs = sorted(rng.randrange(max(1, dur - 600_000)) for _ in wss)
            ip = _pick(rng, user["ips"] + world.misc_ips[:4])
            for w, off in zip(wss, offs):
                t = t0 + off
                sess = "%032x" % rng.getrandbits(128)
                plans.append((t, ui, w, ROAM_LOGINS[rng.randrange(len(ROAM_LOGINS))], ip, sess))
                for _ in range(rng.randint(1, 3)):
                    t2 = min(end, t + rng.randint(5_000, 600_000))
                    a = ROAM_FOLLOWUPS[bisect_right(self.fol_cum, rng.random() * self.fol_cum[-1])]
                    plans.append((t2, ui, w, a, ip, sess))
        plans.sort(key=lambda p: p[0])
        if len(plans) > self.n:
            plans = plans[: self.n]
        events = []
        for t, ui, w, a, ip, sess in plans:
            user = world.users[ui]
            events.append(self._render(t, a, user["email"], True, w, user, ip, sess, ok=True))
        return events

    # -- one event ----------------------------------------------------------
    def _render(self, ts, action, email, has_email, ws, who, ip, sess, ok=False):
        rng = self.rng
        service, name, _w, builder, acct_frac = action
        account_level = acct_frac and rng.random() < acct_frac
        params, result = builder(rng, self.world, None if account_level and builder is p_login else ws, email)
        ev = {"version": "2.0", "timestamp": ts}
        if account_level:
            if rng.random() < 0.5:
                ev["workspaceId"] = None
            ev["accountId"] = self.world.account_id
            ev["auditLevel"] = "ACCOUNT_LEVEL"
        else:
            ev["workspaceId"] = ws
            ev["accountId"] = self.world.account_id
            ev["auditLevel"] = "WORKSPACE_LEVEL"
        ev["serviceName"] = service
        ev["actionName"] = name
        ev["requestId"] = make_uuid(rng)
        # user agent; browser traffic usually carries the user's current
        # (rotating) web session id, API traffic rarely does.
        if who is None:
            ua = SERVICE_UAS[rng.randrange(len(SERVICE_UAS))] if email == "System-User" \
                else API_UAS[rng.randrange(len(API_UAS))]
        elif rng.random() < who["api_share"]:
            ua = who["api"]
            if sess is None and rng.random() < 0.1:
                sess = "%032x" % rng.getrandbits(128)
        else:
            ua = who["browser"]
            if sess is None and rng.random() < 0.9:
                if ts >= who["sess_until"]:
                    who["sess"] = "%032x" % rng.getrandbits(128)
                    who["sess_until"] = ts + rng.randint(1, 8) * HOUR_MS
                sess = who["sess"]
        if sess is not None:
            ev["sessionId"] = sess
        ev["userAgent"] = ua
        ev["sourceIPAddress"] = ip
        ev["userIdentity"] = {"email": email} if has_email else {}
        ev["requestParams"] = params
        # response
        if ok:
            code = 200
        else:
            code = _STATUS[bisect_right(_STATUS_CUM, rng.random())]
            if email == "unknown" and code == 200 and rng.random() < 0.6:
                code = 403
        if code == 200:
            resp = {"statusCode": 200, "result": result}
        else:
            msgs = ERRORS[code]
            resp = {"statusCode": code, "errorMessage": msgs[rng.randrange(len(msgs))]}
        ev["response"] = resp
        if self.panther:
            ev["p_log_type"] = "Databricks.Audit"
            ev["p_event_time"] = fmt_ms(ts)
            ev["p_parse_time"] = fmt_ms(ts + rng.randint(30_000, 300_000))
            ev["p_row_id"] = "%024x" % rng.getrandbits(96)
        return ev

    def _ordinary(self, ts, install_all=False):
        rng, world = self.rng, self.world
        r = rng.random()
        if install_all:  # never System-User / "unknown"
            r = P_SYSTEM + P_UNKNOWN + r * (1.0 - P_SYSTEM - P_UNKNOWN)
        who = None
        has_email = True
        if r < P_SYSTEM:
            email, actions, cum = "System-User", SYSTEM_ACTIONS, self.sys_cum
        elif r < P_SYSTEM + P_UNKNOWN:
            email, actions, cum = "unknown", UNKNOWN_ACTIONS, self.unk_cum
        elif r < P_SYSTEM + P_UNKNOWN + P_NO_EMAIL:
            email, actions, cum, has_email = None, ACTIONS, self.main_cum, False
        elif r < P_SYSTEM + P_UNKNOWN + P_NO_EMAIL + P_EMPTY_EMAIL:
            email, actions, cum = "", ACTIONS, self.main_cum
        elif r < P_SYSTEM + P_UNKNOWN + P_NO_EMAIL + P_EMPTY_EMAIL + P_SERVICE_PRINCIPAL:
            who = world.sps[rng.randrange(len(world.sps))]
            email, actions, cum = who["email"], ACTIONS, self.main_cum
        else:
            uc = world.user_cum
            who = world.users[bisect_right(uc, rng.random() * uc[-1])]
            email, actions, cum = who["email"], ACTIONS, self.main_cum

        if who is None:
            ws = world.workspaces[rng.randrange(N_WORKSPACES)]
            ip = world.misc_ips[rng.randrange(len(world.misc_ips))]
        else:
            home = who["home"]
            if who["extra"] and rng.random() < 0.03:
                ws = who["extra"][rng.randrange(len(who["extra"]))]
            elif len(home) == 1 or rng.random() < 0.75:
                ws = home[0]
            else:
                ws = home[1]
            ips = who["ips"]
            ip = ips[rng.randrange(len(ips))]

        if install_all:
            action = INSTALL_ALL
        else:
            action = actions[bisect_right(cum, rng.random() * cum[-1])]

        return self._render(ts, action, email, has_email, ws, who, ip, None)

    # -- whole stream -------------------------------------------------------
    def lines(self):
        bursts = self._roam_bursts()
        stamps = self._timestamps(self.n - len(bursts))
        # installLibraryOnAllClusters: exactly round(rate * events) of them (as
        # far as there is room), at random positions, so small samples still
        # contain a predictable number.
        k = min(len(stamps), round(self.install_rate * self.n))
        chosen = set(self.rng.sample(range(len(stamps)), k))
        ordinary = (self._ordinary(t, i in chosen) for i, t in enumerate(stamps))
        # heapq.merge is stable: on equal timestamps ordinary events come first.
        merged = heapq.merge(ordinary, bursts, key=lambda e: e["timestamp"])
        for ev in merged:
            yield _dumps(ev)


def open_output(path):
    if path is None or path == "-":
        return sys.stdout.buffer, False
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    raw = open(path, "wb")
    if path.endswith(".gz"):
        # Fixed mtime and empty name so the gzip bytes are reproducible too.
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6), raw
    return raw, False


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Generate deterministic, realistic Databricks audit log events "
                    "(Panther Databricks.Audit shape) as JSON lines.",
        epilog="Same arguments => byte-identical output. Example: "
               "%(prog)s --events 2000 --seed 7 --hours 48 --roamers 3 "
               "--output demo/databricks-audit-sample.jsonl")
    p.add_argument("--events", type=int, required=True, help="number of events to write")
    p.add_argument("--seed", type=int, default=7, help="RNG seed (default 7)")
    p.add_argument("--start", type=int, default=1704067200000,
                   help="epoch ms of the first possible event (default 1704067200000 = 2024-01-01T00:00:00Z)")
    p.add_argument("--hours", type=float, default=48.0,
                   help="span of time the events cover, in hours (default 48)")
    p.add_argument("--roamers", type=int, default=None,
                   help="users who log in to 5-8 distinct workspaces within a few hours "
                        "(default: 1 per 100 users, i.e. 3)")
    p.add_argument("--install-all-rate", type=float, default=0.005,
                   help="fraction of all events that are clusters/installLibraryOnAllClusters "
                        "(exactly round(rate * events) of them; default 0.005)")
    p.add_argument("--panther-fields", action="store_true",
                   help="add p_log_type, p_event_time, p_parse_time and p_row_id")
    p.add_argument("--output", default=None,
                   help="output path (default stdout); gzip-compressed if it ends in .gz")
    a = p.parse_args(argv)
    if a.events < 0:
        p.error("--events must be >= 0")
    if a.hours <= 0:
        p.error("--hours must be > 0")
    if not 0.0 <= a.install_all_rate <= 1.0:
        p.error("--install-all-rate must be within [0, 1]")
    if a.roamers is not None and a.roamers < 0:
        p.error("--roamers must be >= 0")
    return a


def main(argv=None):
    args = parse_args(argv)
    gen = Generator(args)
    out, raw = open_output(args.output)
    buf = []
    try:
        for line in gen.lines():
            buf.append(line)
            if len(buf) >= 4096:
                buf.append("")
                out.write("\n".join(buf).encode())
                buf = []
        if buf:
            buf.append("")
            out.write("\n".join(buf).encode())
        out.flush()
    finally:
        if raw:
            out.close()
            raw.close()
        elif out is not sys.stdout.buffer:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
