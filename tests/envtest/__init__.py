"""A real kube-apiserver + etcd for the tests (envtest), the KServe controller stand-in, and a fault front."""
