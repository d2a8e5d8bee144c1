-- Argo CD health of a kubevz.io VirtualEnvironment (resource.customizations.health.kubevz.io_VirtualEnvironment).
-- Reads only what the agent and the controller publish: status.observedGeneration, phase, and
-- the Ready / Stalled / Scheduled conditions (each with observedGeneration).
-- The first argument that is a non-empty string: in Lua "" is true, so `a or b` would keep an
-- empty message (conditions always carry a message field, often "").
local function firstText(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" and v ~= "" then
      return v
    end
  end
  return nil
end
local hs = { status = "Progressing", message = "waiting for the VE to be scheduled and reconciled" }
if obj.status == nil then
  return hs
end
local gen = obj.metadata.generation
if gen ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < gen) then
  hs.message = "waiting for generation " .. gen .. " to be observed"
  return hs
end
local cond = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    cond[c.type] = c
  end
end
local want = "Running"
if obj.spec ~= nil and obj.spec.powerState ~= nil then
  want = obj.spec.powerState
end
local phase = obj.status.phase
local stalled = cond.Stalled ~= nil and cond.Stalled.status == "True"
if phase == "Failed" or stalled then
  -- Stalled=True: an invalid spec, or a crash loop (reason CrashLoopBackOff) the agent keeps retrying.
  hs.status = "Degraded"
  hs.message = firstText(stalled and cond.Stalled.message or nil, cond.Ready ~= nil and cond.Ready.message or nil, obj.status.message) or "the VE failed"
  return hs
end
if cond.Ready ~= nil and cond.Ready.status == "Unknown" then
  -- The VE's node stopped heartbeating: its state is not known, and it is not moved.
  hs.status = "Degraded"
  hs.message = firstText(cond.Ready.message) or "the VE's node is NotReady"
  return hs
end
if cond.Scheduled ~= nil and cond.Scheduled.status == "False" then
  hs.status = "Progressing"
  hs.message = firstText(cond.Scheduled.message) or "unschedulable"
  return hs
end
if want == "Suspended" and phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "checkpointed to disk as declared"
  return hs
end
if want == "Stopped" and phase == "Stopped" then
  hs.status = "Healthy"
  hs.message = "stopped as declared"
  return hs
end
if want == "Running" and phase == "Running" and cond.Ready ~= nil and cond.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "running on " .. (obj.status.nodeName or "?")
  return hs
end
if cond.Ready ~= nil then
  hs.message = firstText(cond.Ready.message) or hs.message
end
return hs
