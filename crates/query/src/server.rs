//! The gRPC server: the Query service plus standard gRPC health and reflection (so `grpcurl`
//! and load balancers work without our proto files).

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::proto::query_server::QueryServer;
use crate::service::QueryService;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `service` on `listener` until `shutdown` resolves, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    service: QueryService,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<QueryServer<QueryService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(QueryServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            shutdown.await;
            reporter.set_not_serving::<QueryServer<QueryService>>().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::Shutdown;
    use std::sync::Arc;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    #[tokio::test]
    async fn health_reflection_and_graceful_stop() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::Store::open(d.path(), 4).unwrap());
        let shutdown = Shutdown::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        let task =
            tokio::spawn(serve(listener, QueryService::new(store, shutdown.clone()), async move { stop.wait().await }));
        let channel = tonic::transport::Endpoint::from_shared(addr).unwrap().connect().await.unwrap();

        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: "arteria.query.v1.Query".into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);

        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("reflection did not list services");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"arteria.query.v1.Query".to_string()), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
        drop(answers);

        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
}
