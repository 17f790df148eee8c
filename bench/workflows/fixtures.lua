-- Writes N DR-enabled VMs, one disk each, for the storage benchmarks: VM i in
-- namespace bench, label group=GROUP, PV image IMAGE_PREFIX-i in pool rbd.
-- Run by vmdr-run: -- OUTDIR N GROUP IMAGE_PREFIX
local _, args = ...
local fs = require "vmdr.fs"
local yaml = require "vmdr.yaml"
local out, n, group, prefix = args[1], tonumber(args[2]), args[3], args[4]
assert(out and n and group and prefix, "usage: -- OUTDIR N GROUP IMAGE_PREFIX")
assert(fs.mkdir(out))
for i = 1, n do
    local name = string.format("%s-vm-%03d", group, i)
    local claim, image = name .. "-root", string.format("%s-%03d", prefix, i)
    local pvname = "pv-" .. image
    local docs = {
        { apiVersion = "kubevirt.io/v1", kind = "VirtualMachine",
          metadata = { name = name, namespace = "bench", labels = { group = group, ["dr.demojam.com/enabled"] = "true" } },
          spec = { runStrategy = "Always", template = { spec = {
              domain = { devices = { disks = { { name = "root", disk = { bus = "virtio" } } } } },
              volumes = { { name = "root", persistentVolumeClaim = { claimName = claim } } } } } } },
        { apiVersion = "v1", kind = "PersistentVolumeClaim", metadata = { name = claim, namespace = "bench" },
          spec = { accessModes = { "ReadWriteOnce" }, resources = { requests = { storage = "4Mi" } }, volumeName = pvname } },
        { apiVersion = "v1", kind = "PersistentVolume", metadata = { name = pvname },
          spec = { accessModes = { "ReadWriteOnce" }, capacity = { storage = "4Mi" },
              claimRef = { kind = "PersistentVolumeClaim", name = claim, namespace = "bench" },
              csi = { driver = "openshift-storage.rbd.csi.ceph.com", volumeHandle = image,
                  volumeAttributes = { pool = "rbd", imageName = image } } } },
    }
    assert(fs.write(string.format("%s/%s.yaml", out, name), yaml.encode_all(docs)))
    io.stdout:write(image, "\n")
end
