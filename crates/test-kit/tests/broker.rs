//! The kit's in-process broker: serves on return, a kill closes every connection at once, a
//! restart serves the same store on the same port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use test_kit::{KillableBroker, memory_store};
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{GetTokenRequest, PutTokenRequest};
use tonic::transport::{Channel, Endpoint};

const TOKEN: &str = "0:1#10#1=10";

async fn connect(
    broker: &KillableBroker,
) -> Result<TokenBrokerClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(broker.url())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(TokenBrokerClient::new(channel))
}

async fn get(client: &mut TokenBrokerClient<Channel>) -> Result<String, tonic::Status> {
    let reply = client
        .get_token(GetTokenRequest {
            scope: "acct/db/items".into(),
            key: "k".into(),
            partition_key_range_ids: vec![],
        })
        .await?;
    Ok(reply.into_inner().session_token)
}

#[tokio::test]
async fn a_killed_broker_refuses_calls_and_a_restart_serves_the_same_store_on_the_same_port() {
    let mut broker = KillableBroker::start(memory_store());
    let addr = broker.addr();
    assert_eq!(broker.url(), format!("http://{addr}"));
    let mut client = connect(&broker).await.unwrap();
    client
        .put_token(PutTokenRequest {
            scope: "acct/db/items".into(),
            key: "k".into(),
            session_token: TOKEN.into(),
        })
        .await
        .unwrap();

    broker.kill();
    assert!(
        get(&mut client).await.is_err(),
        "the open connection was closed by the kill"
    );
    assert!(
        connect(&broker).await.is_err(),
        "new connections are refused"
    );

    broker.restart();
    assert_eq!(broker.addr(), addr);
    let mut client = connect(&broker).await.unwrap();
    assert_eq!(get(&mut client).await.unwrap(), TOKEN, "the store survived");
}

#[tokio::test]
async fn a_dropped_broker_is_killed() {
    let broker = KillableBroker::start(memory_store());
    let url = broker.url();
    drop(broker);
    let refused = Endpoint::from_shared(url).unwrap().connect().await;
    assert!(refused.is_err());
}
