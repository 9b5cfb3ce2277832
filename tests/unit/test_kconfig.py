from harness.build import kconfig


def test_parse_merge_and_render():
    a = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x y\"\n"
    b = "CONFIG_B=y\nCONFIG_A=n\n"
    merged = kconfig.merge([a, b])
    assert merged == {"CONFIG_A": None, "CONFIG_B": "y", "CONFIG_S": '"x y"'}
    assert kconfig.parse(kconfig.render(merged)) == merged


def test_check_names_every_dropped_symbol():
    requested = {"CONFIG_RUST": "y", "CONFIG_MODVERSIONS": None, "CONFIG_X": "m"}
    final = kconfig.parse("CONFIG_MODVERSIONS=y\nCONFIG_X=m\n")
    dropped = kconfig.check(requested, final)
    assert [d.symbol for d in dropped] == ["CONFIG_RUST", "CONFIG_MODVERSIONS"]
    assert "asked y, olddefconfig left not set" in str(dropped[0])


def test_shipped_base_fragment_asks_for_the_essentials():
    paths = kconfig.fragment_paths([])
    base = kconfig.parse(paths[0].read_text())
    for sym in ("CONFIG_RUST", "CONFIG_IOMMU_SUPPORT", "CONFIG_IOMMU_IO_PGTABLE_LPAE",
                "CONFIG_DEBUG_FS", "CONFIG_MODULES", "CONFIG_VIRTIO_NET", "CONFIG_PCI"):
        assert base[sym] == "y"
    assert base["CONFIG_MODVERSIONS"] is None
    # the test module owns the SMMUv3: the kernel's driver must not
    assert base["CONFIG_ARM_SMMU_V3"] is None


def test_module_sync_copies_changes_and_removes_deleted_sources(tmp_path):
    from harness.build.kbuild import module_sources, sync_module

    moddir = tmp_path / "module"
    moddir.mkdir()
    (moddir / "gone.rs").write_text("// a file the module no longer has\n")
    sync_module(moddir)
    assert sorted(p.name for p in moddir.iterdir()) == sorted(p.name for p in module_sources())
    kept = moddir / "iopt_hil.rs"
    mtime = kept.stat().st_mtime_ns
    sync_module(moddir)
    assert kept.stat().st_mtime_ns == mtime  # unchanged files keep their mtime (kbuild)


def test_tiny_fragments_are_those_the_trees_tinyconfig_reads(tmp_path):
    (tmp_path / "kernel/configs").mkdir(parents=True)
    (tmp_path / "kernel/configs/tiny.config").write_text("CONFIG_EMBEDDED=y\n")
    assert kconfig.tiny_fragments(tmp_path, "arm64") == (None, [tmp_path / "kernel/configs/tiny.config"])
    (tmp_path / "kernel/configs/tiny-base.config").write_text("CONFIG_EXPERT=y\n")
    (tmp_path / "arch/x86/configs").mkdir(parents=True)
    (tmp_path / "arch/x86/configs/tiny.config").write_text("CONFIG_NOHIGHMEM=y\n")
    base, tiny = kconfig.tiny_fragments(tmp_path, "x86")
    assert base == "kernel/configs/tiny-base.config"
    assert tiny == [tmp_path / "kernel/configs/tiny.config", tmp_path / "arch/x86/configs/tiny.config"]
    assert kconfig.tiny_fragments(tmp_path, "arm64")[1] == [tmp_path / "kernel/configs/tiny.config"]
