//! A Redis Cluster's nodes as one master sees them (`CLUSTER NODES`): how many masters and
//! replicas are `ok`, `pfail` or `fail`, and which ones are not ok.
//!
//! Why: `CLUSTER INFO` says how many slots are failing, not which node; an operator paged for
//! a cluster instance going down wants the node (its address and role) in the log and the
//! counts by role and state on a dashboard. The counts are a gauge with bounded labels (two
//! roles × three states per instance); addresses go to the log only, when the set of failing
//! nodes changes. The format is Redis's own (`<id> <ip:port@cport[,hostname]> <flags> <master>
//! <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...`), documented with the
//! command; flags `fail?` (suspected by this node) and `fail` (agreed by a majority of masters)
//! are the states.

/// Node roles published, in gauge order.
pub(super) const NODE_ROLES: [&str; 2] = ["master", "replica"];
/// Node states published, in gauge order.
pub(super) const NODE_STATES: [&str; 3] = ["ok", "pfail", "fail"];

/// The nodes counted by role and state ([`NODE_ROLES`] × [`NODE_STATES`]), and a description
/// of each node that is not ok (`127.0.0.1:7001 master fail, 5461 slots`), sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ClusterNodes {
    pub(super) counts: [[u64; 3]; 2],
    pub(super) not_ok: Vec<String>,
}

/// Slots a node's slot fields cover (`0-5460`, `5461`; importing and migrating entries such as
/// `[93->-id]` are not counted).
fn slots(fields: &[&str]) -> u64 {
    fields
        .iter()
        .filter(|f| !f.starts_with('['))
        .map(|f| match f.split_once('-') {
            Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u64::from(f.parse::<u64>().is_ok()),
        })
        .sum()
}

/// Parses a `CLUSTER NODES` reply. Lines that do not have the documented eight fields are
/// skipped; nodes in handshake or without an address are not counted.
pub(super) fn parse(reply: &str) -> ClusterNodes {
    let mut nodes = ClusterNodes::default();
    for line in reply.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            continue;
        }
        let flags: Vec<&str> = fields[2].split(',').collect();
        if flags.iter().any(|f| matches!(*f, "handshake" | "noaddr")) {
            continue;
        }
        let role = if flags.contains(&"master") {
            0
        } else if flags.contains(&"slave") {
            1
        } else {
            continue;
        };
        let state = if flags.contains(&"fail") {
            2
        } else if flags.contains(&"fail?") {
            1
        } else {
            0
        };
        nodes.counts[role][state] += 1;
        if state > 0 {
            let address = fields[1].split('@').next().unwrap_or(fields[1]);
            let mut description = format!("{address} {} {}", NODE_ROLES[role], NODE_STATES[state]);
            if role == 0 {
                description.push_str(&format!(", {} slots", slots(&fields[8..])));
            }
            nodes.not_ok.push(description);
        }
    }
    nodes.not_ok.sort();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply in the documented format (Redis 7.0: `ip:port@cport[,hostname]`) for a 3+3
    /// cluster whose first master is down and not yet replaced, one replica suspected, and a
    /// slot being imported.
    const REPLY: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,node-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,node-2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail? 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master,fail - 0 0 1 disconnected 0-5460 [93->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
";

    #[test]
    fn counts_nodes_by_role_and_state_and_names_those_not_ok() {
        let nodes = parse(REPLY);
        assert_eq!(nodes.counts, [[2, 0, 1], [2, 1, 0]]);
        assert_eq!(
            nodes.not_ok,
            vec![
                "127.0.0.1:30001 master fail, 5461 slots".to_owned(),
                "127.0.0.1:30005 replica pfail".to_owned(),
            ]
        );
    }

    #[test]
    fn a_healthy_cluster_has_nothing_to_report_and_odd_lines_are_skipped() {
        let healthy = REPLY
            .replace("slave,fail?", "slave")
            .replace("myself,master,fail", "myself,master");
        let nodes = parse(&format!(
            "{healthy}garbage line\nabc 1.2.3.4:1@2 handshake - 0 0 0 connected\n"
        ));
        assert_eq!(nodes.counts, [[3, 0, 0], [3, 0, 0]]);
        assert!(nodes.not_ok.is_empty());
    }

    #[test]
    fn counts_slot_ranges_and_single_slots() {
        assert_eq!(slots(&["0-5460"]), 5461);
        assert_eq!(slots(&["5", "7-8", "[9->-abc]"]), 3);
        assert_eq!(slots(&["9-3"]), 0);
    }
}
