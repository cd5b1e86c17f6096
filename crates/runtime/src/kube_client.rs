//! The Kubernetes client of a process: from a kubeconfig file (and context) when one is
//! named, else inferred (`$KUBECONFIG`, `~/.kube/config`, in-cluster).

use std::path::{Path, PathBuf};

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};

#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("loading kubeconfig {path}: {source}")]
    Load {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("loading the kubeconfig ($KUBECONFIG or ~/.kube/config): {0}")]
    Default(#[source] KubeconfigError),
    #[error("finding a kubeconfig ($KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Infer(#[source] InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Build(#[source] kube::Error),
}

/// The client configuration for `kubeconfig` and `context`; without a file, a context is
/// looked up in the default kubeconfig, and without either the configuration is inferred.
pub async fn kube_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Config, KubeClientError> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| KubeClientError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|source| KubeClientError::Load {
                    path: path.to_path_buf(),
                    source,
                })
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(KubeClientError::Default),
        None => kube::Config::infer().await.map_err(KubeClientError::Infer),
    }
}

/// The client for [`kube_config`]'s configuration.
pub async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, KubeClientError> {
    let config = kube_config(kubeconfig, context).await?;
    kube::Client::try_from(config).map_err(KubeClientError::Build)
}
