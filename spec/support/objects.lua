-- Kubernetes objects the workflow specs load into vmdr-sim, as YAML text.
local M = {}

--- A bound PVC and its ceph-csi RBD PV (pool rbd, image `image`), shaped as the API
--- returns them (bind annotation, claimRef with a uid, reclaim policy Delete).
function M.pvc_pv_yaml(ns, claim, pv, image)
    return string.format([[
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: %s
  namespace: %s
  annotations: {pv.kubernetes.io/bind-completed: "yes"}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 8Mi}}
  storageClassName: ocs-storagecluster-ceph-rbd
  volumeMode: Block
  volumeName: %s
status: {phase: Bound}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: %s
  annotations: {pv.kubernetes.io/provisioned-by: openshift-storage.rbd.csi.ceph.com}
spec:
  accessModes: [ReadWriteMany]
  capacity: {storage: 8Mi}
  claimRef: {apiVersion: v1, kind: PersistentVolumeClaim, name: %s, namespace: %s, uid: 0b0e7a8e-1111-2222-3333-444455556666}
  csi:
    driver: openshift-storage.rbd.csi.ceph.com
    volumeHandle: 0001-0011-openshift-storage-0000000000000001-%s
    volumeAttributes: {clusterID: openshift-storage, pool: rbd, imageName: %s}
  persistentVolumeReclaimPolicy: Delete
  storageClassName: ocs-storagecluster-ceph-rbd
  volumeMode: Block
]], claim, ns, pv, pv, claim, ns, "8d74fb16-d233-49ea-8826-" .. string.format("%012d", #image), image)
end


return M
