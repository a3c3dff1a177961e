// The model engine's public surface: GPT stage graphs (forward/backward), export graph,
// parameter specs and initialization. The graph builder and autodiff stay behind it.
export * from './config.js'
export { stageLayout, stageParamLayout, buildStageGraphs, buildInferenceGraph, modelParams, matmulFlops } from './stages.js'
export { stageParams } from './gpt.js'
export { initParams, paramCount, paramSize, ParamLayout, type ParamSlot } from './params.js'
