//! [`Link`]: a connection to `serve`'s Redis, one server or a Redis Cluster.
//!
//! `--state redis://HOST:PORT/DB` (or `rediss://`) is one server. `redis+cluster://HOST:PORT`
//! (or `rediss+cluster://`) is a Redis Cluster: the node given is a seed, the others are
//! found from it (more seeds: `redis+cluster://A:PORT,B:PORT`). Every call of `serve` touches
//! the keys of one hash tag (`rulehost:{GROUP:N}:...`), so it runs whole on the node that
//! owns that slot; a cluster link routes each command to its node and follows `MOVED` and
//! `ASK` as the cluster changes.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Connection, ConnectionLike, RedisResult, Value};

/// The schemes that name a Redis Cluster, and the scheme each seed gets.
const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

/// The seed nodes' URLs of a cluster URL; `None` for one server's URL.
pub fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    CLUSTER_SCHEMES.iter().find_map(|(cluster, plain)| {
        let rest = url.strip_prefix(cluster)?;
        Some(
            rest.split(',')
                .filter(|seed| !seed.is_empty())
                .map(|seed| format!("{plain}{seed}"))
                .collect(),
        )
    })
}

/// One server or a cluster; see the module docs.
pub enum Link {
    /// One server.
    One(Connection),
    /// A Redis Cluster (boxed: its connection map is large).
    Cluster(Box<ClusterConnection>),
}

impl Link {
    /// Connects to `url` (within `connect`), replies awaited at most `read`.
    pub fn open(url: &str, connect: Duration, read: Duration) -> RedisResult<Link> {
        match cluster_seeds(url) {
            Some(seeds) => {
                let client = ClusterClient::builder(seeds)
                    .connection_timeout(connect)
                    .response_timeout(read)
                    .build()?;
                Ok(Link::Cluster(Box::new(client.get_connection()?)))
            }
            None => {
                let conn = redis::Client::open(url)?.get_connection_with_timeout(connect)?;
                conn.set_read_timeout(Some(read))?;
                Ok(Link::One(conn))
            }
        }
    }

    /// Whether it is a cluster link.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }

    /// Runs `cmd` on the node that owns `key`'s slot (for a command without a key, such as
    /// `SCAN`, meant for that slot's keys).
    pub fn on_node_of(&mut self, key: &str, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Link::One(conn) => cmd.query(conn),
            Link::Cluster(conn) => conn.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                    key,
                    SlotAddr::Master,
                ))),
            ),
        }
    }

    /// Runs `cmds` and returns their replies in order: one pipeline on one server; on a
    /// cluster each on its own node, since the keys may be in many slots.
    pub fn query_each(&mut self, cmds: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Link::One(conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(conn)
            }
            Link::Cluster(conn) => cmds.iter().map(|cmd| cmd.query(conn)).collect(),
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Link::One(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Link::One(c) => c.req_packed_commands(cmd, offset, count),
            Link::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Link::One(c) => c.req_command(cmd),
            Link::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::One(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Link::One(c) => c.check_connection(),
            Link::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Link::One(c) => c.is_open(),
            Link::Cluster(c) => c.is_open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seeds() {
        assert_eq!(cluster_seeds("redis://127.0.0.1:6379/0"), None);
        assert_eq!(
            cluster_seeds("redis+cluster://a:7000,b:7001"),
            Some(vec![
                "redis://a:7000".to_owned(),
                "redis://b:7001".to_owned()
            ])
        );
        assert_eq!(
            cluster_seeds("rediss+cluster://u:p@a:7000"),
            Some(vec!["rediss://u:p@a:7000".to_owned()])
        );
    }
}
