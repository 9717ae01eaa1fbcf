<?php
// Sets up, through Phorge's own classes, what an administrator sets up by hand to put
// spanblame's tagging gate in front of merges (README: "The tagging gate"), or to end a deploy
// plan with spanblame (README: "Deploys from the forge"): a Passphrase password credential
// holding the integration's secret, and a Harbormaster build plan whose one step is "Make HTTP
// Request" to spanblame, with "When Complete: Wait For Message" (the gate) or not (`no-wait`,
// a deploy). Idempotent by name (the credential and plan named <name>); used by
// tests/it/phorge_live.rs.
//
//   php harbormaster.php <phorge-root> <name> <step uri> <password> [no-wait]
//
// Prints "<plan id>\t<plan phid>".
$root = $argv[1];
list(, , $name, $uri, $password) = $argv;
$wait = !(isset($argv[5]) && $argv[5] === 'no-wait');
require_once $root.'/scripts/init/init-script.php';

$admin = id(new PhabricatorPeopleQuery())
  ->setViewer(PhabricatorUser::getOmnipotentUser())
  ->withUsernames(array('admin'))
  ->executeOne();
if (!$admin) {
  fwrite(STDERR, "no user `admin`: run setup-phorge.sh first\n");
  exit(1);
}

$unguarded = AphrontWriteGuard::beginScopedUnguardedWrites();

$credential = id(new PassphraseCredential())->loadOneWhere(
  'name = %s AND isDestroyed = 0',
  $name);
if (!$credential) {
  $secret = id(new PassphraseSecret())
    ->setSecretData($password)
    ->save();
  $credential = PassphraseCredential::initializeNewCredential($admin)
    ->setCredentialType(PassphrasePasswordCredentialType::CREDENTIAL_TYPE)
    ->setProvidesType(PassphrasePasswordCredentialType::PROVIDES_TYPE)
    ->setName($name)
    ->setUsername('harbormaster')
    ->setSecretID($secret->getID())
    ->save();
}

$plan = id(new HarbormasterBuildPlan())->loadOneWhere('name = %s', $name);
if (!$plan) {
  $plan = HarbormasterBuildPlan::initializeNewBuildPlan($admin)
    ->setName($name)
    ->save();
  id(new HarbormasterBuildStep())
    ->setName('Ask spanblame')
    ->setDescription('')
    ->setBuildPlanPHID($plan->getPHID())
    ->setClassName('HarbormasterHTTPRequestBuildStepImplementation')
    ->setSequence(1)
    ->setDetails(
      array(
        'uri' => $uri,
        'method' => 'POST',
        'credential' => $credential->getPHID(),
        'builtin.wait-for-message' => $wait ? 'wait' : 'continue',
      ))
    ->save();
}

unset($unguarded);
echo $plan->getID()."\t".$plan->getPHID()."\n";
