// Policy -> BPF map contents (see compile.h), and the userspace mirror of the kernel's
// selector matching.
//
// How the gate decides, and so what the destination maps must hold:
//   A connection (proto, port, addr) is governed by every declared destination that
//   contains it: same protocol, a CIDR containing addr, and port in its ports (or no ports
//   listed: every port). It is allowed only if, for each of those destinations, some rule
//   allows the process's identity or "*". The kernel looks up two LPM tries' worth of keys,
//   (proto, port, addr) and (proto, 0, addr), and requires both answers to allow; so each
//   trie node carries the exact set of destinations of its port class containing it (its
//   dset), and a dset allows an identity only when every member does.
//   The longest matching node N gives that set exactly: every member contains N's prefix,
//   hence addr; and any destination CIDR C of that port class containing addr is itself a
//   node, no longer than N (N is the longest match), so C contains N's prefix.
#include "core/compile.h"

#include <sys/sysmacros.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <iterator>
#include <set>
#include <tuple>
#include <unordered_map>

#include "core/prefix.h"

namespace kw::core {


uint32_t IdentityTable::id_for(const std::string& spiffe_id) {
    if (auto id = find(spiffe_id)) return *id;
    uint32_t id = next_++;
    by_name_[spiffe_id] = id;
    by_id_[id] = spiffe_id;
    return id;
}

std::optional<uint32_t> IdentityTable::find(const std::string& spiffe_id) const {
    auto it = by_name_.find(spiffe_id);
    if (it == by_name_.end()) return std::nullopt;
    return it->second;
}

std::optional<std::string> IdentityTable::name(uint32_t id) const {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    return it->second;
}

void IdentityTable::restore(uint32_t id, const std::string& spiffe_id) {
    if (id == KW_IDENT_NONE) return;  // "unattested" is never a name
    by_name_[spiffe_id] = id;
    by_id_[id] = spiffe_id;
    next_ = std::max(next_, id + 1);
}

namespace {

bool same_file(const kw_file_key& a, const kw_file_key& b) { return a.dev == b.dev && a.ino == b.ino; }

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string workload_path(size_t index) { return "/workloads/" + std::to_string(index); }

// allow_env goes to the kernel as it is (kw_workload.env_allow): CodeEnvVar values are
// the kernel's kw_env_var bits, and the LD_* three are also their own refusal bits.
static_assert(uint32_t{kLdPreload} == KW_ENV_LD_PRELOAD && uint32_t{kLdAudit} == KW_ENV_LD_AUDIT &&
              uint32_t{kLdLibraryPath} == KW_ENV_LD_LIBRARY_PATH && uint32_t{kLdOther} == KW_ENV_LD_OTHER &&
              uint32_t{kGlibcTunables} == KW_ENV_GLIBC_TUNABLES && uint32_t{kGconvPath} == KW_ENV_GCONV_PATH &&
              uint32_t{kOpenssl} == KW_ENV_OPENSSL && uint32_t{kBashEnv} == KW_ENV_BASH_ENV &&
              uint32_t{kShEnv} == KW_ENV_ENV && uint32_t{kBashFunc} == KW_ENV_BASH_FUNC &&
              uint32_t{kShellopts} == KW_ENV_SHELLOPTS && uint32_t{kBashopts} == KW_ENV_BASHOPTS &&
              uint32_t{kPs4} == KW_ENV_PS4 && uint32_t{kPython} == KW_ENV_PYTHON && uint32_t{kPerl} == KW_ENV_PERL &&
              uint32_t{kNode} == KW_ENV_NODE && uint32_t{kRubyopt} == KW_ENV_RUBYOPT &&
              uint32_t{kRubylib} == KW_ENV_RUBYLIB && uint32_t{kJavaToolOptions} == KW_ENV_JAVA_TOOL_OPTIONS &&
              uint32_t{kJavaOptions} == KW_ENV_JAVA_OPTIONS && uint32_t{kJdkJavaOptions} == KW_ENV_JDK_JAVA_OPTIONS &&
              uint32_t{kClasspath} == KW_ENV_CLASSPATH);
static_assert(uint32_t{KW_ENV_LD_PRELOAD} == KW_EXEC_LD_PRELOAD && uint32_t{KW_ENV_LD_AUDIT} == KW_EXEC_LD_AUDIT &&
              uint32_t{KW_ENV_LD_LIBRARY_PATH} == KW_EXEC_LD_LIBRARY_PATH);

uint64_t revision_prefix(const std::string& revision) {
    uint64_t value = 0;
    if (revision.size() < 16) return 0;
    auto [end, ec] = std::from_chars(revision.data(), revision.data() + 16, value, 16);
    return ec == std::errc{} && end == revision.data() + 16 ? value : 0;
}

// Sets of destination indices (ascending), each stored once. A set is asked for as an
// enclosing set plus some destinations; asked again, it is answered from memory.
class SetInterner {
public:
    static constexpr uint32_t kEmpty = 0;

    SetInterner() { intern({}); }

    uint32_t with(uint32_t base, const std::vector<uint32_t>& added) {
        auto [it, fresh] = asked_.try_emplace({base, added}, kEmpty);
        if (!fresh) return it->second;
        std::vector<uint32_t> merged;
        merged.reserve(members(base).size() + added.size());
        std::set_union(members(base).begin(), members(base).end(), added.begin(), added.end(),
                       std::back_inserter(merged));
        it->second = intern(std::move(merged));
        return it->second;
    }

    const std::vector<uint32_t>& members(uint32_t id) const { return *members_[id]; }
    size_t size() const { return members_.size(); }

private:
    uint32_t intern(std::vector<uint32_t> members) {
        auto [it, fresh] = ids_.try_emplace(std::move(members), static_cast<uint32_t>(members_.size()));
        if (fresh) members_.push_back(&it->first);  // a map's keys stay where they are
        return it->second;
    }

    std::map<std::vector<uint32_t>, uint32_t> ids_;
    std::vector<const std::vector<uint32_t>*> members_;  // by id
    std::map<std::pair<uint32_t, std::vector<uint32_t>>, uint32_t> asked_;
};

class Compiler {
public:
    Compiler(const Policy& policy, HostView& host, IdentityTable& ids, const PreviousPins& previous,
             const CompileOptions& options)
        : policy_(policy), host_(host), ids_(ids), previous_(previous), options_(options) {}

    Result<CompiledPolicy> run() {
        out_.config.mode = policy_.mode == Mode::Audit ? KW_MODE_AUDIT : KW_MODE_ENFORCE;
        out_.config.log_allowed = policy_.log_allowed ? 1 : 0;
        out_.config.revision = revision_prefix(policy_.revision);
        if (auto r = pin_files(); !r) return r.error();
        index_active_files();
        if (auto r = compile_workloads(); !r) return r.error();
        compile_code();
        compile_sources();
        compile_debuggers();
        index_rules();
        compile_destinations();
        compile_allows();
        return std::move(out_);
    }

private:
    using PinKey = std::pair<std::string, PinRole>;

    // One pin per (path, role), in order of first mention.
    Result<void> pin_files() {
        std::map<PinKey, std::optional<std::string>> policy_hash;
        std::vector<PinKey> order;
        auto note = [&](const std::optional<std::string>& path, PinRole role,
                        const std::optional<std::string>& hash) -> Result<void> {
            if (!path) return {};
            auto [it, inserted] = policy_hash.emplace(PinKey{*path, role}, hash);
            if (inserted) order.push_back(it->first);
            if (hash && it->second && *it->second != *hash)
                return make_error(in_quotes(*path) + " is pinned to two different sha256 values by the policy");
            if (hash) it->second = hash;
            return {};
        };
        sources_.resize(policy_.workloads.size());
        for (size_t i = 0; i < policy_.workloads.size(); ++i) {
            const Workload& w = policy_.workloads[i];
            if (auto r = note(w.selectors.exe, PinRole::Exe, w.selectors.sha256); !r) return r;
            if (auto r = note(w.selectors.script, PinRole::Script, w.selectors.script_sha256); !r) return r;
            for (const auto& [field, path] : argv_sources(i))
                if (auto r = note(path, PinRole::Source, std::nullopt); !r) return r;
        }
        for (const PinKey& key : order) {
            pin_ids_[key] = static_cast<uint32_t>(out_.pins.size());
            out_.pins.push_back(pin(key.first, key.second, policy_hash[key]));
        }
        return {};
    }

    // The absolute paths the arguments after argv[0] name, as a whole argument or as the
    // value of an option ("--config=/etc/app.toml"): the sources of workload INDEX, with
    // their policy fields. A directory is only a warning, its files are not pinned.
    std::vector<std::pair<std::string, std::string>> argv_sources(size_t index) {
        const Selectors& sel = policy_.workloads[index].selectors;
        std::vector<std::pair<std::string, std::string>> found;
        if (!sel.argv) return found;
        const std::string base = workload_path(index) + (sel.argv->prefix ? "/selectors/argv_prefix/" : "/selectors/argv/");
        for (size_t a = 1; a < sel.argv->args.size(); ++a) {
            std::string arg = sel.argv->args[a];
            if (size_t eq = arg.find('='); !arg.starts_with('/') && eq != std::string::npos) arg = arg.substr(eq + 1);
            if (!arg.starts_with('/')) continue;
            const ArgPath& named = arg_path(arg);
            std::string field = base + std::to_string(a);
            if (named.kind == ArgPath::Directory)
                out_.warnings.push_back({field, "workload " + policy_.workloads[index].id + ": argv names the directory " +
                                                    in_quotes(arg) + "; the files in it are not pinned"});
            if (named.kind == ArgPath::File || named.kind == ArgPath::Missing) found.emplace_back(field, arg);
        }
        sources_[index] = found;
        return found;
    }

    const ArgPath& arg_path(const std::string& path) {
        if (auto it = arg_paths_.find(path); it != arg_paths_.end()) return it->second;
        return arg_paths_.emplace(path, host_.arg_path(path)).first->second;
    }

    PinnedFile pin(const std::string& path, PinRole role, const std::optional<std::string>& policy_hash) {
        PinnedFile pinned{path, role};
        if (role == PinRole::Source) {
            // Read at its path, so the path must keep naming it: only root may change that.
            const ArgPath& named = arg_path(path);
            pinned.real_path = named.kind == ArgPath::File ? named.real_path : path;
            if (named.kind == ArgPath::File && !named.problem.empty()) {
                pinned.problem = named.problem;
                return pinned;
            }
            if (pinned.real_path.size() >= KW_SOURCE_PATH_MAX) {
                pinned.problem = in_quotes(pinned.real_path) + " is longer than the kernel compares (" +
                                 std::to_string(KW_SOURCE_PATH_MAX - 1) + " bytes)";
                return pinned;
            }
        }
        auto previous = previous_.find(path);
        if (policy_hash) {
            pinned.pinned_sha256 = *policy_hash;
            pinned.pin_source = "policy";
        } else if (!options_.repin && previous != previous_.end()) {
            pinned.pinned_sha256 = previous->second;
            pinned.pin_source = "previous";
        } else {
            pinned.pin_source = "computed";
        }
        auto actual = host_.pin_file(path);
        if (!actual) {
            pinned.problem = actual.message();
            return pinned;
        }
        if (pinned.pin_source == "computed") pinned.pinned_sha256 = actual->sha256;
        pinned.actual = *actual;
        pinned.active = actual->sha256 == pinned.pinned_sha256;
        if (pinned.active) return pinned;
        if (pinned.pin_source == "policy")
            pinned.problem = in_quotes(path) + " does not match the sha256 in the policy: sha256 " + actual->sha256 +
                             ", policy says " + pinned.pinned_sha256 +
                             "; it has no identity until the file or the policy is corrected";
        else
            pinned.problem = in_quotes(path) + " changed since it was pinned: sha256 " + actual->sha256 + ", pinned " +
                             pinned.pinned_sha256 + "; it has no identity until the policy is applied again";
        return pinned;
    }

    // Every active pin's file gets an entry and a candidate list of its own; paths that
    // reach one inode (hard links, symlinks) share both.
    void index_active_files() {
        out_.lists.push_back(kw_cand_list{});  // KW_LIST_ANY
        std::map<std::pair<uint64_t, uint64_t>, uint32_t> file_lists;  // (dev, ino) -> list_id
        for (uint32_t pin_id = 0; pin_id < out_.pins.size(); ++pin_id) {
            const PinnedFile& pinned = out_.pins[pin_id];
            if (!pinned.active || pinned.role == PinRole::Source) continue;  // sources are read, not exec'd
            const PinnedContent& content = *pinned.actual;
            auto [known, fresh] = file_lists.try_emplace({content.key.dev, content.key.ino},
                                                         static_cast<uint32_t>(out_.lists.size()));
            if (!fresh) {
                list_of_pin_[pin_id] = known->second;
                continue;
            }
            kw_file_val val{};
            val.ctime_sec = content.ctime_sec;
            val.ctime_nsec = content.ctime_nsec;
            val.list_id = static_cast<uint32_t>(out_.lists.size());
            val.pin_id = pin_id;
            out_.lists.push_back(kw_cand_list{});
            out_.files.emplace_back(content.key, val);
            list_of_pin_[pin_id] = val.list_id;
        }
    }

    const PinnedFile& pin_of(const std::string& path, PinRole role) const {
        return out_.pins[pin_ids_.at({path, role})];
    }

    // The list a workload is a candidate in: its script's, else its exe's, else list 0.
    // None when a file it names is not active: it can never match (fail closed).
    std::optional<uint32_t> list_for(const Selectors& sel, size_t index) const {
        for (const auto& [field, path] : sources_[index])
            if (!pin_of(path, PinRole::Source).active) return std::nullopt;
        if (!sel.script && !sel.exe) return KW_LIST_ANY;
        if (sel.exe && !pin_of(*sel.exe, PinRole::Exe).active) return std::nullopt;
        PinKey keying = sel.script ? PinKey{*sel.script, PinRole::Script} : PinKey{*sel.exe, PinRole::Exe};
        auto list = list_of_pin_.find(pin_ids_.at(keying));
        if (list == list_of_pin_.end()) return std::nullopt;
        return list->second;
    }

    Result<void> compile_workloads() {
        for (size_t i = 0; i < policy_.workloads.size(); ++i) {
            const Workload& w = policy_.workloads[i];
            const Selectors& sel = w.selectors;
            kw_workload k{};
            k.ident = ids_.id_for(w.id);
            if (sel.exe) {
                k.flags |= KW_SEL_EXE;
                k.exe = active_key(*sel.exe, PinRole::Exe, i, w.id);
            }
            if (sel.script) {
                k.flags |= KW_SEL_SCRIPT;
                k.script = active_key(*sel.script, PinRole::Script, i, w.id);
            }
            if (sel.uid) {
                k.flags |= KW_SEL_UID;
                k.uid = *sel.uid;
            }
            if (sel.gid) {
                k.flags |= KW_SEL_GID;
                k.gid = *sel.gid;
            }
            std::optional<CgroupRef> cgroup;
            if (sel.cgroup) {
                k.flags |= KW_SEL_CGROUP;
                cgroup = host_.resolve_cgroup(*sel.cgroup);
                if (cgroup) {
                    k.cgroup_id = cgroup->id;
                    k.cgroup_level = cgroup->level;
                    auto same = [&](const auto& g) { return g.first == cgroup->id; };
                    if (std::none_of(out_.governed_cgroups.begin(), out_.governed_cgroups.end(), same))
                        out_.governed_cgroups.emplace_back(cgroup->id, cgroup->level);
                } else {
                    out_.warnings.push_back({workload_path(i) + "/selectors/cgroup",
                                             "workload " + w.id + " matches no process: cgroup " +
                                                 in_quotes(*sel.cgroup) +
                                                 " does not exist; create it, then apply the policy again"});
                }
            }
            out_.cgroups.push_back(cgroup);
            if (sel.argv) {
                k.flags |= sel.argv->prefix ? KW_SEL_ARGV_PREFIX : KW_SEL_ARGV;
                if (auto r = encode_argv(sel.argv->args, k, i); !r) return r;
            }
            if (sel.container) k.flags |= KW_SEL_CONTAINER;
            if (!sources_[i].empty()) k.flags |= KW_SEL_SOURCES;
            for (const auto& [field, path] : sources_[i]) {
                const PinnedFile& pinned = pin_of(path, PinRole::Source);
                if (!pinned.active)
                    out_.warnings.push_back({field, "workload " + w.id + " matches no process: " + pinned.problem});
            }
            k.env_allow = w.allow_env;
            if (w.allow_raw_sockets) k.flags |= KW_SEL_ALLOW_RAW_SOCKETS;
            if (w.allow_core_dumps) k.flags |= KW_SEL_ALLOW_CORE_DUMPS;
            k.code_set = k.ident;
            if (auto r = add_candidate(sel, static_cast<uint32_t>(i)); !r) return r;
            out_.workloads.push_back(k);
        }
        return {};
    }

    // The code each identity may map executable (kw_code): for every workload entry of
    // that identity, its exe with the loader and libraries it links, a script's
    // interpreter with its own, and the entry's allow_code; each file as it is now, by
    // (dev, ino) and ctime. An identity some entry selects by neither exe nor script runs
    // code nobody named, and its set is marked unrestricted. A file that cannot be read
    // is a warning: the set lacks it, and mapping it is refused (fail closed).
    void compile_code() {
        std::map<std::tuple<uint32_t, uint64_t, uint64_t>, kw_code_val> entries;
        std::set<uint32_t> open;
        auto add = [&](uint32_t set, const std::string& path, size_t index, const std::string& field) {
            auto content = code_file(path);
            if (!content) {
                out_.warnings.push_back({workload_path(index) + field,
                                         "workload " + policy_.workloads[index].id + " may not map " +
                                             in_quotes(path) + " executable: " + content.message()});
                return;
            }
            kw_code_val val{};
            val.ctime_sec = content->ctime_sec;
            val.ctime_nsec = content->ctime_nsec;
            if (entries.try_emplace({set, content->key.dev, content->key.ino}, val).second)
                out_.code_paths[set].push_back(path);
        };
        // Returns the loader that maps PATH ("" if none), for the plugins of its workload.
        auto add_program = [&](uint32_t set, const std::string& path, size_t index, const std::string& field,
                               const std::string& loader) -> std::string {
            add(set, path, index, field);
            const Result<std::vector<std::string>>& closure = code_closure(path, loader);
            if (!closure) {
                out_.warnings.push_back({workload_path(index) + field,
                                         "workload " + policy_.workloads[index].id +
                                             ": the libraries of " + in_quotes(path) +
                                             " are not pinned, and may not be mapped: " + closure.message()});
                return loader;
            }
            for (const std::string& lib : *closure) add(set, lib, index, field);
            return closure->empty() ? loader : closure->front();
        };
        for (size_t i = 0; i < policy_.workloads.size(); ++i) {
            const Workload& w = policy_.workloads[i];
            const Selectors& sel = w.selectors;
            uint32_t set = out_.workloads[i].code_set;
            if (!list_for(sel, i)) continue;  // a file it names is not active: it matches nothing
            if (!sel.exe && !sel.script) open.insert(set);
            std::string loader;  // the program's loader, which also maps its plugins
            if (sel.exe) loader = add_program(set, *sel.exe, i, "/selectors/exe", "");
            if (sel.script) {
                if (auto interp = host_.script_interpreter(*sel.script))
                    loader = add_program(set, *interp, i, "/selectors/script", "");
            }
            for (size_t c = 0; c < w.allow_code.size(); ++c) {
                std::string field = "/allow_code/" + std::to_string(c);
                auto files = host_.code_files(w.allow_code[c]);
                if (!files) {
                    out_.warnings.push_back({workload_path(i) + field,
                                             "workload " + w.id + " opens nothing with " + in_quotes(w.allow_code[c]) +
                                                 ": " + files.message()});
                    continue;
                }
                // A plugin brings the libraries it links.
                for (const std::string& f : *files) add_program(set, f, i, field, loader);
            }
        }
        for (uint32_t set : open) entries.try_emplace({set, 0, 0}, kw_code_val{});
        for (const auto& [key, val] : entries) {
            kw_code_key k{};
            k.set = std::get<0>(key);
            k.dev = std::get<1>(key);
            k.ino = std::get<2>(key);
            out_.code.emplace_back(k, val);
        }
    }

    // The loader's answer for PATH, asked once per compilation: entries of one identity,
    // and identities sharing an exe or plugins, ask about the same files.
    const Result<std::vector<std::string>>& code_closure(const std::string& path, const std::string& loader) {
        auto key = std::make_pair(path, loader);
        if (auto it = code_closures_.find(key); it != code_closures_.end()) return it->second;
        return code_closures_.emplace(key, host_.code_closure(path, loader)).first->second;
    }

    // A file of a code set, read once per compilation (workloads share their libraries).
    Result<PinnedContent> code_file(const std::string& path) {
        if (auto it = code_files_.find(path); it != code_files_.end()) return it->second;
        Result<PinnedContent> content = make_error("");
        if (auto pin = pin_ids_.find({path, PinRole::Exe}); pin != pin_ids_.end() && out_.pins[pin->second].actual) {
            // The exe as it was pinned: a file that no longer matches its hash is no code.
            const PinnedFile& pinned = out_.pins[pin->second];
            content = pinned.active ? Result<PinnedContent>(*pinned.actual) : make_error(pinned.problem);
        } else {
            content = host_.pin_file(path);
        }
        code_files_.emplace(path, content);
        return content;
    }

    // The sources of each identity (kw_sources): every file its entries' argv name, at
    // its real path, as it was pinned. Entries whose sources are not all active match
    // nothing, and add none.
    void compile_sources() {
        std::set<std::pair<uint32_t, std::string>> seen;
        for (size_t i = 0; i < policy_.workloads.size(); ++i) {
            if (!list_for(policy_.workloads[i].selectors, i)) continue;
            uint32_t set = out_.workloads[i].code_set;
            for (const auto& [field, path] : sources_[i]) {
                const PinnedFile& pinned = pin_of(path, PinRole::Source);
                if (!seen.emplace(set, pinned.real_path).second) continue;
                kw_source_key k{};
                k.set = set;
                std::memcpy(k.path, pinned.real_path.data(), pinned.real_path.size());
                kw_source_val v{};
                v.file = pinned.actual->key;
                v.ctime_sec = pinned.actual->ctime_sec;
                v.ctime_nsec = pinned.actual->ctime_nsec;
                out_.sources.emplace_back(k, v);
            }
        }
    }

    // A debugger named by path is the file now at that path, as the kernel sees it. Its
    // content is not pinned: the entry trusts whoever may replace that file, and a
    // replaced file (another inode) no longer matches until the policy is applied again.
    void compile_debuggers() {
        std::set<std::tuple<uint32_t, uint32_t, uint64_t, uint64_t>> seen;  // what same_debugger compares
        for (uint32_t i = 0; i < policy_.allow_debuggers.size(); ++i) {
            const std::string& entry = policy_.allow_debuggers[i];
            kw_debugger_key key{};
            if (entry.starts_with('/')) {
                auto file = debugger_file(entry);
                if (!file) {
                    out_.warnings.push_back({"/allow_debuggers/" + std::to_string(i),
                                             "debugger " + in_quotes(entry) + " lets nobody in: " + file.message()});
                    continue;
                }
                key.kind = KW_DEBUGGER_EXE;
                key.exe = *file;
            } else {
                key.kind = KW_DEBUGGER_IDENT;
                key.ident = ids_.id_for(entry);
            }
            // Paths that reach one file (hard links, symlinks) keep the first index.
            if (seen.emplace(key.kind, key.ident, key.exe.dev, key.exe.ino).second) out_.debuggers.emplace_back(key, i);
        }
    }

    // A file that a workload also names as its exe was looked at by pin_files(): not twice.
    Result<kw_file_key> debugger_file(const std::string& path) {
        if (auto pin = pin_ids_.find({path, PinRole::Exe}); pin != pin_ids_.end()) {
            const PinnedFile& pinned = out_.pins[pin->second];
            if (pinned.actual) return pinned.actual->key;
            return make_error(pinned.problem);
        }
        auto content = host_.pin_file(path);
        if (!content) return content.error();
        return content->key;
    }

    kw_file_key active_key(const std::string& path, PinRole role, size_t index, const std::string& id) {
        const PinnedFile& pinned = pin_of(path, role);
        if (pinned.active) return pinned.actual->key;
        out_.warnings.push_back({workload_path(index) + (role == PinRole::Exe ? "/selectors/exe" : "/selectors/script"),
                                 "workload " + id + " matches no process: " + pinned.problem});
        return kw_file_key{};
    }

    Result<void> encode_argv(const std::vector<std::string>& args, kw_workload& k, size_t index) {
        std::string bytes;
        for (const std::string& arg : args) {
            bytes += arg;
            bytes += '\0';
        }
        if (bytes.size() > KW_ARGV_MAX)
            return make_error(workload_path(index) + ": argv encodes to " + std::to_string(bytes.size()) +
                              " bytes; the kernel compares at most " + std::to_string(KW_ARGV_MAX));
        std::memcpy(k.argv, bytes.data(), bytes.size());
        k.argv_len = static_cast<uint32_t>(bytes.size());
        return {};
    }

    Result<void> add_candidate(const Selectors& sel, uint32_t index) {
        auto list_id = list_for(sel, index);
        if (!list_id) return {};
        kw_cand_list& list = out_.lists[*list_id];
        if (list.n == KW_CAND_MAX) {
            std::string shared = *list_id == KW_LIST_ANY ? "name neither exe nor script"
                                 : sel.script            ? "share the script " + in_quotes(*sel.script)
                                                         : "share the exe " + in_quotes(*sel.exe);
            return make_error("more than " + std::to_string(KW_CAND_MAX) + " workloads " + shared +
                              " (KW_CAND_MAX); split them by another file or merge their selectors");
        }
        list.wl[list.n++] = index;
        return {};
    }

    // Lowest index of a rule to DEST from the identity IDENT; a "*" rule to DEST counts
    // too. Answered from index_rules(): large policies ask this millions of times.
    std::optional<uint32_t> rule_to(size_t dest, uint32_t ident) const {
        std::optional<uint32_t> best = any_rule_[dest];
        const auto& rules = ident_rules_[dest];
        auto it = std::lower_bound(rules.begin(), rules.end(), std::pair{ident, uint32_t{0}});
        if (it != rules.end() && it->first == ident && (!best || it->second < *best)) best = it->second;
        return best;
    }

    // Per destination, its lowest "*" rule and the lowest rule from each identity, by
    // identity id; and the order of each identity's first rule.
    void index_rules() {
        std::unordered_map<std::string, size_t> dest_index;
        for (size_t d = 0; d < policy_.destinations.size(); ++d) dest_index.emplace(policy_.destinations[d].name, d);
        ident_rules_.assign(policy_.destinations.size(), {});
        any_rule_.assign(policy_.destinations.size(), std::nullopt);
        for (uint32_t r = 0; r < policy_.rules.size(); ++r) {
            const Rule& rule = policy_.rules[r];
            auto d = dest_index.find(rule.to);
            if (d == dest_index.end()) continue;  // the parser rejects these
            if (rule.from == "*") {
                if (!any_rule_[d->second]) any_rule_[d->second] = r;
                continue;
            }
            auto ident = ids_.find(rule.from);
            if (!ident) continue;  // no workload has it: nothing can carry this identity
            ident_order_.try_emplace(*ident, ident_order_.size());
            ident_rules_[d->second].emplace_back(*ident, r);
        }
        for (auto& rules : ident_rules_) {
            std::sort(rules.begin(), rules.end());  // by identity, then rule: the lowest first
            rules.erase(std::unique(rules.begin(), rules.end(),
                                    [](const auto& a, const auto& b) { return a.first == b.first; }),
                        rules.end());
        }
    }

    // Each (protocol, port class, CIDR) the policy names is a trie node; the map entries
    // come in order of first mention. A node's set is every destination of its port class
    // with a CIDR containing the node's prefix. Within a port class, CIDRs sorted by
    // (address, length) come in trie pre-order, each after the prefixes containing it; so
    // one pass with a stack of the open prefixes finds each node's nearest enclosing node,
    // and its set is that node's set plus the destinations that name its own prefix. A set
    // is built once per distinct (enclosing set, own destinations), and numbered in order
    // of first use by a node: O(n log n) in the nodes, plus the sets' own size.
    void compile_destinations() {
        using Node = std::tuple<uint8_t, uint16_t, Addr16, uint8_t>;  // proto, port, masked addr, prefix_len
        struct Mention {
            Node node;
            uint32_t seq;  // order of mention: destination, port, CIDR
            uint32_t dest;
        };
        std::vector<Mention> mentions;
        for (uint32_t d = 0; d < policy_.destinations.size(); ++d) {
            const Destination& dest = policy_.destinations[d];
            std::vector<uint16_t> ports = dest.ports.empty() ? std::vector<uint16_t>{0} : dest.ports;
            for (uint16_t port : ports)
                for (const Cidr& c : dest.cidrs)
                    mentions.push_back({Node{proto_of(dest), port, mask_prefix(c.addr, c.prefix_len), c.prefix_len},
                                        static_cast<uint32_t>(mentions.size()), d});
        }
        std::sort(mentions.begin(), mentions.end(),
                  [](const Mention& a, const Mention& b) { return std::tie(a.node, a.seq) < std::tie(b.node, b.seq); });

        struct Unique {
            uint32_t first_seq;  // its first mention
            size_t mention;      // where its mentions start in MENTIONS
            uint32_t set;        // interned in SETS
        };
        std::vector<Unique> unique;
        SetInterner sets;
        struct Open {
            Addr16 addr;
            uint8_t len;
            uint32_t set;
        };
        std::vector<Open> open;  // enclosing prefixes of the current node, outermost first
        std::vector<uint32_t> own;
        for (size_t i = 0; i < mentions.size();) {
            const auto& [proto, port, addr, len] = mentions[i].node;
            if (i == 0 || std::tie(proto, port) != std::tie(std::get<0>(mentions[i - 1].node),
                                                            std::get<1>(mentions[i - 1].node)))
                open.clear();  // another port class: another trie
            own.clear();
            size_t end = i;
            for (; end < mentions.size() && mentions[end].node == mentions[i].node; ++end)
                if (own.empty() || own.back() != mentions[end].dest) own.push_back(mentions[end].dest);
            while (!open.empty() && !prefix_contains(open.back().addr, open.back().len, addr, len)) open.pop_back();
            uint32_t set = sets.with(open.empty() ? SetInterner::kEmpty : open.back().set, own);
            open.push_back({addr, len, set});
            unique.push_back({mentions[i].seq, i, set});
            i = end;
        }

        std::vector<uint32_t> by_mention(unique.size());
        for (uint32_t u = 0; u < unique.size(); ++u) by_mention[u] = u;
        std::sort(by_mention.begin(), by_mention.end(),
                  [&](uint32_t a, uint32_t b) { return unique[a].first_seq < unique[b].first_seq; });
        std::vector<std::optional<kw_dst_val>> set_val(sets.size());  // by interned set
        for (uint32_t u : by_mention) {
            const auto& [proto, port, addr, len] = mentions[unique[u].mention].node;
            std::optional<kw_dst_val>& val = set_val[unique[u].set];
            if (!val) val = dset_val(sets.members(unique[u].set));
            kw_dst_key key{};
            key.prefixlen = KW_DST_FIXED_BITS + len;
            key.proto = proto;
            key.port[0] = static_cast<uint8_t>(port >> 8);
            key.port[1] = static_cast<uint8_t>(port & 0xff);
            std::copy(addr.begin(), addr.end(), key.addr);
            out_.dsts.emplace_back(key, *val);
        }
    }
    // The map value of the nodes whose set is MEMBERS, which takes the next dset id.
    kw_dst_val dset_val(const std::vector<uint32_t>& members) {
        kw_dst_val val{};
        val.dset = static_cast<uint32_t>(out_.dset_members.size());
        out_.dset_members.push_back(members);
        if (std::all_of(members.begin(), members.end(), [&](uint32_t d) { return any_rule_[d].has_value(); })) {
            val.flags = KW_DSET_ANY_ALLOWED;
            val.any_rule = *any_rule_[members.front()];
        }
        if (std::any_of(members.begin(), members.end(),
                        [&](uint32_t d) { return policy_.destinations[d].tls == Tls::Mutual; }))
            val.flags |= KW_DSET_MTLS;
        if (policy_.lifecycle_events || std::any_of(members.begin(), members.end(), [&](uint32_t d) {
                return policy_.destinations[d].lifecycle_events;
            })) {
            val.flags |= KW_DSET_LIFECYCLE;
            out_.lifecycle = true;
        }
        return val;
    }

    static uint8_t proto_of(const Destination& d) { return d.protocol == Protocol::Udp ? KW_PROTO_UDP : KW_PROTO_TCP; }

    void compile_allows() {
        std::vector<bool> any_allowed(out_.dset_members.size(), false);
        for (const auto& [key, val] : out_.dsts)
            if (val.flags & KW_DSET_ANY_ALLOWED) any_allowed[val.dset] = true;

        // An identity allowed to a set that "*" does not cover has its own rule to every
        // member without a "*" rule: any such member's rules name all the candidates, and
        // the one with the fewest rules names the fewest.
        std::vector<std::tuple<size_t, uint32_t, uint32_t, uint32_t>> found;  // order, dset, ident, rule
        for (uint32_t dset = 0; dset < out_.dset_members.size(); ++dset) {
            if (any_allowed[dset]) continue;
            const std::vector<uint32_t>& members = out_.dset_members[dset];
            auto pivot = members.end();
            for (auto m = members.begin(); m != members.end(); ++m)
                if (!any_rule_[*m] &&
                    (pivot == members.end() || ident_rules_[*m].size() < ident_rules_[*pivot].size()))
                    pivot = m;
            if (pivot == members.end()) continue;
            for (const auto& [ident, r] : ident_rules_[*pivot]) {
                if (!std::all_of(members.begin(), members.end(),
                                 [&, &ident = ident](uint32_t d) { return rule_to(d, ident).has_value(); }))
                    continue;
                found.emplace_back(ident_order_.at(ident), dset, ident, *rule_to(members.front(), ident));
            }
        }
        std::sort(found.begin(), found.end());  // identities in rule order, then sets
        for (const auto& [order, dset, ident, rule] : found) {
            kw_allow_val val{};
            val.rule = rule;
            out_.allows.emplace_back(kw_allow_key{ident, dset}, val);
        }
    }

    const Policy& policy_;
    HostView& host_;
    IdentityTable& ids_;
    const PreviousPins& previous_;
    const CompileOptions& options_;
    CompiledPolicy out_;
    std::map<PinKey, uint32_t> pin_ids_;
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> ident_rules_;  // per destination: (ident, rule)
    std::unordered_map<uint32_t, size_t> ident_order_;                    // ident -> order of its first rule
    std::vector<std::optional<uint32_t>> any_rule_;                        // per destination
    std::map<uint32_t, uint32_t> list_of_pin_;  // active pins only
    std::map<std::string, Result<PinnedContent>> code_files_;
    std::vector<std::vector<std::pair<std::string, std::string>>> sources_;  // per workload: (field, path)
    std::map<std::string, ArgPath> arg_paths_;
    std::map<std::pair<std::string, std::string>, Result<std::vector<std::string>>> code_closures_;
};

bool selectors_match(const CompiledPolicy& compiled, uint32_t wl, const ProcessFacts& facts) {
    const kw_workload& w = compiled.workloads[wl];
    if ((w.flags & KW_SEL_EXE) && !(facts.exe && same_file(*facts.exe, w.exe))) return false;
    if ((w.flags & KW_SEL_SCRIPT) && !(facts.script && same_file(*facts.script, w.script))) return false;
    if ((w.flags & KW_SEL_UID) && facts.uid != w.uid) return false;
    if ((w.flags & KW_SEL_GID) && facts.gid != w.gid) return false;
    if (w.flags & KW_SEL_CGROUP) {
        if (w.cgroup_id == 0 || w.cgroup_level >= facts.cgroup_ancestors.size() ||
            facts.cgroup_ancestors[w.cgroup_level] != w.cgroup_id)
            return false;
    }
    if (w.flags & KW_SEL_CONTAINER) {
        // As the kernel: the process's own cgroup, not an ancestor.
        if (facts.cgroup_ancestors.empty()) return false;
        const uint64_t cgroup = facts.cgroup_ancestors.back();
        auto here = [&](const kw_ctr_key& k) { return k.cgroup_id == cgroup && k.wl == wl; };
        if (std::none_of(compiled.containers.begin(), compiled.containers.end(), here)) return false;
    }
    std::string_view wanted(reinterpret_cast<const char*>(w.argv), w.argv_len);
    if ((w.flags & KW_SEL_ARGV) && facts.argv != wanted) return false;
    if ((w.flags & KW_SEL_ARGV_PREFIX) && !facts.argv.starts_with(wanted)) return false;
    return true;
}

// The process's own condition, checked after the selectors as the kernel does.
bool refused(const kw_workload& w, const ProcessFacts& facts) {
    return facts.anon_exe || facts.traced || facts.env_unread || (facts.code_env & ~w.env_allow) != 0 ||
           (facts.elsewhere && (w.flags & KW_SEL_SOURCES));
}

std::optional<uint32_t> list_of_file(const CompiledPolicy& compiled, const kw_file_key& key) {
    for (const auto& [file, val] : compiled.files)
        if (same_file(file, key)) return val.list_id;
    return std::nullopt;
}

}  // namespace

Result<CompiledPolicy> compile_policy(const Policy& policy, HostView& host, IdentityTable& ids,
                                      const PreviousPins& previous, const CompileOptions& options) {
    return Compiler(policy, host, ids, previous, options).run();
}

std::optional<uint32_t> match_workload(const CompiledPolicy& compiled, const ProcessFacts& facts) {
    std::vector<uint32_t> lists;
    if (facts.script)
        if (auto list = list_of_file(compiled, *facts.script)) lists.push_back(*list);
    if (facts.exe)
        if (auto list = list_of_file(compiled, *facts.exe)) lists.push_back(*list);
    lists.push_back(KW_LIST_ANY);

    std::optional<uint32_t> best;
    for (uint32_t list_id : lists) {
        if (list_id >= compiled.lists.size()) continue;
        const kw_cand_list& list = compiled.lists[list_id];
        // Lists are ascending, so the first match in each is that list's best.
        for (uint32_t i = 0; i < std::min<uint32_t>(list.n, KW_CAND_MAX); ++i) {
            uint32_t wl = list.wl[i];
            if (best && wl >= *best) break;
            if (wl < compiled.workloads.size() && selectors_match(compiled, wl, facts) &&
                !refused(compiled.workloads[wl], facts)) {
                best = wl;
                break;
            }
        }
    }
    return best;
}

}  // namespace kw::core
