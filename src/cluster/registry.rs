//! The Redis side: the node records, the room owners, the rooms each node holds, and the lost
//! rooms' tombstones. Every call is bounded in time, so a Redis that stops answering fails
//! requests instead of holding them.

use super::node::NodeRecord;
use super::ClusterError;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// A Redis call that takes longer fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A lost room's tombstone (`410 room_lost`) lasts this long.
const LOST_TTL_SECS: u64 = 60;
/// One node reaps a lapsed node's rooms; the lock outlives a slow reap.
const REAP_LOCK_MS: u64 = 10_000;

/// Deletes a key only if it still holds the value given: a node releases a room only while it
/// still owns it.
const DELETE_IF: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

#[derive(Clone)]
pub struct Registry {
    conn: ConnectionManager,
    prefix: String,
    delete_if: Script,
}

/// A room a lapsed node held, as its last heartbeat described it.
#[derive(Debug, Clone)]
pub struct LostRoom {
    pub room: String,
    pub participants: serde_json::Value,
}

async fn timed<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, ClusterError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(ClusterError::from),
        Err(_) => Err(ClusterError::Timeout),
    }
}

impl Registry {
    pub async fn connect(url: &str, prefix: &str) -> Result<Registry, ClusterError> {
        let client = redis::Client::open(url).map_err(|e| ClusterError::Config(e.to_string()))?;
        let conn = timed(client.get_connection_manager()).await?;
        Ok(Registry { conn, prefix: prefix.to_string(), delete_if: Script::new(DELETE_IF) })
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    fn members(&self) -> String {
        format!("{}:members", self.prefix)
    }

    /// Writes this node's record with its time to live, and the rooms it holds.
    pub async fn heartbeat(
        &self,
        rec: &NodeRecord,
        ttl: Duration,
        rooms: &HashMap<String, String>,
    ) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        let body = serde_json::to_string(rec).map_err(|e| ClusterError::Data(e.to_string()))?;
        let rooms_key = self.key("rooms", &rec.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key("node", &rec.id))
            .arg(body)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .sadd(self.members(), &rec.id)
            .ignore()
            .del(&rooms_key)
            .ignore();
        if !rooms.is_empty() {
            let fields: Vec<(&String, &String)> = rooms.iter().collect();
            pipe.hset_multiple(&rooms_key, &fields).ignore();
        }
        timed(pipe.query_async::<()>(&mut c)).await
    }

    /// Every live node, and the ids of members whose record has lapsed.
    pub async fn nodes(&self) -> Result<(Vec<NodeRecord>, Vec<String>), ClusterError> {
        let mut c = self.conn.clone();
        let mut ids: Vec<String> = timed(c.smembers(self.members())).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key("node", id)).collect();
        let values: Vec<Option<String>> = timed(redis::cmd("MGET").arg(&keys).query_async(&mut c)).await?;
        let (mut live, mut lapsed) = (Vec::new(), Vec::new());
        for (id, v) in ids.into_iter().zip(values) {
            match v.and_then(|v| serde_json::from_str::<NodeRecord>(&v).ok()) {
                Some(rec) => live.push(rec),
                None => lapsed.push(id),
            }
        }
        Ok((live, lapsed))
    }

    pub async fn node(&self, id: &str) -> Result<Option<NodeRecord>, ClusterError> {
        let mut c = self.conn.clone();
        let v: Option<String> = timed(c.get(self.key("node", id))).await?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    pub async fn owner(&self, room: &str) -> Result<Option<String>, ClusterError> {
        let mut c = self.conn.clone();
        timed(c.get(self.key("room", room))).await
    }

    /// Makes `node` the room's owner unless it has one: the owner after the call, the same for
    /// every node that asks at the same moment.
    pub async fn claim(&self, room: &str, node: &str) -> Result<String, ClusterError> {
        let mut c = self.conn.clone();
        let key = self.key("room", room);
        let set: Option<String> =
            timed(redis::cmd("SET").arg(&key).arg(node).arg("NX").arg("GET").query_async(&mut c)).await?;
        match set {
            // `GET` with `NX`: the old value when there was one (and nothing was set).
            Some(owner) => Ok(owner),
            None => {
                let _: () = timed(c.del(self.key("lost", room))).await?;
                Ok(node.to_string())
            }
        }
    }

    /// Gives up a room this node owns (it ended here).
    pub async fn release(&self, room: &str, node: &str) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        timed(self.delete_if.key(self.key("room", room)).arg(node).invoke_async::<i64>(&mut c)).await.map(|_| ())
    }

    /// The tombstone of a room lost with its node.
    pub async fn lost(&self, room: &str) -> Result<Option<serde_json::Value>, ClusterError> {
        let mut c = self.conn.clone();
        let v: Option<String> = timed(c.get(self.key("lost", room))).await?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Releases the rooms of a node whose record lapsed, if no other node is at it already:
    /// each room it still owned is given up and tombstoned. Returns the rooms this call reaped.
    pub async fn reap(&self, dead: &str, me: &str) -> Result<Vec<LostRoom>, ClusterError> {
        let mut c = self.conn.clone();
        let lock: Option<String> = timed(
            redis::cmd("SET")
                .arg(self.key("reap", dead))
                .arg(me)
                .arg("NX")
                .arg("PX")
                .arg(REAP_LOCK_MS)
                .query_async(&mut c),
        )
        .await?;
        if lock.is_none() {
            return Ok(Vec::new());
        }
        let rooms: HashMap<String, String> = timed(c.hgetall(self.key("rooms", dead))).await?;
        let mut lost = Vec::new();
        for (room, participants) in rooms {
            let released: i64 =
                timed(self.delete_if.key(self.key("room", &room)).arg(dead).invoke_async(&mut c)).await?;
            if released == 0 {
                // Already re-created elsewhere, or ended before the node went.
                continue;
            }
            let participants = serde_json::from_str(&participants).unwrap_or(serde_json::Value::Null);
            let stone = serde_json::json!({ "room": room, "node": dead, "participants": participants });
            let _: () = timed(c.set_ex(self.key("lost", &room), stone.to_string(), LOST_TTL_SECS)).await?;
            lost.push(LostRoom { room, participants });
        }
        let _: () = timed(c.del(self.key("rooms", dead))).await?;
        let _: () = timed(c.srem(self.members(), dead)).await?;
        Ok(lost)
    }

    /// A clean exit: the node's record and rooms go at once, not after the TTL.
    pub async fn leave(&self, me: &str) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        let rooms: Vec<String> = timed(c.hkeys(self.key("rooms", me))).await?;
        for room in rooms {
            self.release(&room, me).await?;
        }
        let _: () = timed(c.del(&[self.key("node", me), self.key("rooms", me)])).await?;
        timed(c.srem(self.members(), me)).await
    }
}

impl Registry {
    /// The nodes holding a part of `room` (cascaded rooms, docs/cluster.md).
    pub async fn parts(&self, room: &str) -> Result<Vec<String>, ClusterError> {
        let mut c = self.conn.clone();
        timed(c.smembers(self.key("parts", room))).await
    }

    pub async fn add_part(&self, room: &str, node: &str) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        timed(c.sadd(self.key("parts", room), node)).await
    }

    pub async fn remove_part(&self, room: &str, node: &str) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        timed(c.srem(self.key("parts", room), node)).await
    }
}
