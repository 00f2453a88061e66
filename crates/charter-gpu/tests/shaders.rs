//! Every composed shader module parses and validates under naga, without a GPU.
//!
//! The capabilities are core WebGPU's, subgroups for the modules named `.subgroups` and
//! `shader-f16` for those named `.f16-tile`: `unpack2x16float` and `pack2x16float`, which naga
//! files under `SHADER_FLOAT16_IN_FLOAT32`, are core WGSL, not `shader-f16`.

#[test]
fn every_shader_validates() {
    let shaders = charter_gpu::shaders();
    assert!(shaders.len() >= 26, "{} modules", shaders.len());
    for s in shaders {
        let module = naga::front::wgsl::parse_str(&s.source).unwrap_or_else(|e| panic!("{}: {}", s.name, e.emit_to_string(&s.source)));
        let f16 = s.name.ends_with(".f16-tile");
        assert_eq!(s.source.contains("enable f16;"), f16, "{}", s.name);
        let mut capabilities = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32 | naga::valid::Capabilities::SUBGROUP;
        capabilities.set(naga::valid::Capabilities::SHADER_FLOAT16, f16);
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities);
        validator
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all());
        // Subgroup operations appear only in the modules named for them.
        assert_eq!(s.source.contains("subgroupAdd"), s.name.ends_with(".subgroups"), "{}", s.name);
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", s.name, e.emit_to_string(&s.source)));
    }
}
